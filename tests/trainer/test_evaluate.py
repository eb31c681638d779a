import json

import numpy as np
import pytest

from trainer.cli import main

KEYS = {"FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn"}


@pytest.mark.slow
def test_eval_scores_model_and_baselines(tiny_run, synth_corpus, tmp_path):
    out = tmp_path / "eval.json"
    args = ["eval", "--run", str(tiny_run), "--data", str(synth_corpus), "--json", str(out), "--predictions", "3"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert set(result["model"]) == {"offline", "streaming"}
    assert set(result["baselines"]) == {"random", "mime", "meanseq", "meanfr"}
    for metrics in result["baselines"].values():
        assert set(metrics) == KEYS and all(np.isfinite(v) for v in metrics.values())
    extra = {"FRSyn_corrected", "coverage", "precision", "motion_energy"}
    for metrics in result["model"].values():
        assert set(metrics) == KEYS | extra and all(np.isfinite(v) for v in metrics.values())
    assert result["appropriate"]["FRDiv"] > 0 and result["appropriate"]["motion_energy"] > 0
    assert set(result["expressiveness"]) == {"0.5", "1", "1.5", "default"}
    personas = result["personas"]  # the synthetic corpus names its listeners' personas; fit stored their styles
    assert len(personas["by_persona"]) >= 2 and 0 <= personas["classifier_accuracy"] <= 1
    assert result["model"]["streaming"]["FRDiv"] > 0  # ten different samples per speaker
    assert result["baselines"]["meanfr"]["FRDiv"] == 0
    halves = result["directions"]  # each direction of the pairs on its own: together they make the whole score
    assert set(halves) == {"listening", "swapped"}
    for name, whole in (
        ("model (streaming)", result["model"]["streaming"]),
        ("baseline mime", result["baselines"]["mime"]),
    ):
        assert (halves["listening"][name] + halves["swapped"][name]) / 2 == pytest.approx(whole["FRCorr"], rel=1e-6)
    ceiling = result["ceiling"]["listening"]  # the synthetic corpus's listeners drawn again: what a perfect model gets
    assert result["ceiling"]["draws"] == 3 and set(ceiling) == {"any_persona", "same_persona", "by_persona"}
    assert all(np.isfinite(v) for v in ceiling["any_persona"].values())
    assert set(ceiling["by_persona"]) >= set(personas["by_persona"])
    lag = result["behaviour"]["reaction_lag_ms"]  # learned, reported apart from the pipeline's delay
    assert all(0 <= lag[who] <= 2000 for who in ("model", "corpus"))
    report = out.with_suffix(".md").read_text()
    assert (
        "Behavioural lag" in report
        and "| model (streaming) |" in report
        and "## Personas" in report
        and "## By direction" in report
        and "| corpus's listeners drawn again, any persona |" in report
    )
    assert (tmp_path / "reactions.png").stat().st_size > 1000


@pytest.mark.slow
def test_sample_renders_a_reaction_video(tiny_run, synth_corpus, tmp_path):
    out = tmp_path / "reaction.mp4"
    assert main(["sample", "--run", str(tiny_run), "--data", str(synth_corpus), "--out", str(out)]) == 0
    frames = np.load(out.with_suffix(".npy"))
    assert frames.shape[1] == 83 and out.stat().st_size > 1000
    assert (
        main(["sample", "--run", str(tiny_run), "--data", str(synth_corpus), "--out", str(out), "--index", "99"]) == 2
    )
