"""`reactdiff-trainer eval`: score a trained model and the baselines with the REACT metrics, write a report.

    reactdiff-trainer eval --run runs/tiny --data data/synth --json runs/tiny/eval.json

The model is scored twice, both through the engine's window loop: "offline" (whole clip available, windows
every W/2 frames, more sampler steps) and "streaming" (the live settings: hop H, K steps). Each speaker gets
10 predictions (seeds 0..9). The JSON holds {"model": {"offline": M, "streaming": M}, "baselines": {...}, ...}.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from renderer.face import EMOTION_NAMES, FACE_DIM
from trainer.behaviour import median_reaction_lag_ms
from trainer.data import ReactDataset
from trainer.data.react import SPEAKER_FACES, SpeakerFaces
from trainer.model import LISTENER_DIM, ReactDiff

log = logging.getLogger(__name__)
PREDICTIONS = 10


@dataclass(frozen=True)
class Setting:
    """How windows are run for one evaluation mode."""

    hop: int
    steps: int
    sampler: str


def settings_for(model: ReactDiff) -> dict[str, Setting]:
    cfg = model.cfg
    return {
        "offline": Setting(hop=cfg.window // 2, steps=max(10, cfg.default_steps), sampler="ddim"),
        "streaming": Setting(hop=cfg.hop, steps=cfg.default_steps, sampler=cfg.default_sampler),
    }


def predict(
    model: ReactDiff,
    audio: NDArray,
    face: NDArray,
    setting: Setting,
    *,
    predictions: int = PREDICTIONS,
    batch: int = 50,
    face_found: NDArray[np.bool_] | None = None,
) -> NDArray[np.float32]:
    """(N,T,57), (N,T,58) -> listener frames (N, predictions, T, 83); prediction p of chunk c uses seed (p, c)."""
    from trainer.generate import generate

    n, t = audio.shape[:2]
    out = np.empty((n, predictions, t, LISTENER_DIM), np.float32)
    chunks = [slice(s, min(s + batch, n)) for s in range(0, n, batch)]
    bar = tqdm(total=predictions * len(chunks), desc=f"sampling hop={setting.hop} K={setting.steps}", leave=False)
    for p in range(predictions):
        for c, rows in enumerate(chunks):
            out[rows, p] = generate(
                model, audio[rows], face[rows], steps=setting.steps, sampler=setting.sampler, hop=setting.hop,
                seed=p * 1000 + c, face_found=None if face_found is None else face_found[rows],
            )  # fmt: skip
            bar.update(1)
    bar.close()
    return out


def _stack(arrays: list[NDArray]) -> NDArray[np.float32]:
    t = min(len(a) for a in arrays)
    return np.stack([a[:t] for a in arrays]).astype(np.float32)


def evaluate(
    model: ReactDiff,
    data: Path,
    *,
    split: str = "test",
    predictions: int = PREDICTIONS,
    speaker_faces: SpeakerFaces = "fitted",
    track_cache: Path | None = None,
) -> dict[str, Any]:
    """Metrics for the model in both settings and for every baseline, on `split` (both directions).

    `speaker_faces="tracked"`: the model sees the speaker faces the engine's tracker finds in the test videos
    (tracked first where not cached), as it would live; the baselines and targets are unchanged.
    """
    from trainer.baselines import BASELINES
    from trainer.metrics import compute_all
    from trainer.train import prepare_arrays

    test_set = ReactDataset(data, split, speaker_faces=speaker_faces, track_cache=track_cache)
    if test_set.tracked is not None:
        test_set.track(workers=2)
    test = prepare_arrays(test_set)
    train = prepare_arrays(ReactDataset(data, "train"))  # the baselines' listener pool only
    neighbours = ReactDataset(data, split).neighbours()
    audio, face, found = _stack(test.audio), _stack(test.face), _stack(test.face_found).astype(np.bool_)
    listeners = _stack(test.listener)
    listener, speaker = listeners[..., FACE_DIM:], _stack(test.speaker_emotion)
    results: dict[str, Any] = {"model": {}, "baselines": {}}
    outputs: dict[str, NDArray] = {}
    for name, setting in settings_for(model).items():
        frames = predict(model, audio, face, setting, predictions=predictions, face_found=found)
        outputs[name] = frames
        results["model"][name] = compute_all(frames[..., FACE_DIM:], listener, speaker, neighbours, workers=2)
    train_listeners = _stack(train.listener)[..., FACE_DIM:]
    rng = np.random.default_rng(0)
    for name, baseline in BASELINES.items():
        pred = baseline(speaker, train_listeners, samples=predictions, rng=rng)
        results["baselines"][name] = compute_all(pred, listener, speaker, neighbours, workers=2)
    results["behaviour"] = {  # learned, not the pipeline's delay: the first prediction of each speaker
        "reaction_lag_ms": {
            "model": median_reaction_lag_ms(face, outputs["streaming"][:, 0]),
            "corpus": median_reaction_lag_ms(face, listeners),
        }
    }
    results["settings"] = {k: vars(v) for k, v in settings_for(model).items()}
    results["data"] = {
        "split": split, "samples": len(audio), "frames": int(audio.shape[1]), "speaker_faces": speaker_faces,
    }  # fmt: skip
    results["_outputs"] = outputs
    results["_targets"] = {"listener": listener, "speaker": speaker, "neighbours": neighbours}
    return results


def write_report(results: dict[str, Any], out: Path) -> None:
    """Markdown table of every metric plus a plot of generated vs appropriate reactions for one speaker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn"]
    rows = [(f"model ({k})", v) for k, v in results["model"].items()]
    rows += [(f"baseline {k}", v) for k, v in results["baselines"].items()]
    data = results["data"]
    faces = {"tracked": "tracked by the engine's face tracker from the speaker videos", "fitted": "the corpus's arrays"}
    where = f"Split `{data['split']}`, {data['samples']} samples; speaker faces: {faces[data['speaker_faces']]}."
    lines = ["# Evaluation", "", where, ""]
    lines += ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |" for name, m in rows]
    lines += ["", "FRCorr is summed over the 10 predictions per speaker, as the official code does.", ""]
    lag = results["behaviour"]["reaction_lag_ms"]
    lines += [
        f"Behavioural lag (median over speakers of the lag at which the listener's smile best follows the speaker's, "
        f"0-2 s): model (streaming) {lag['model']:.0f} ms, the corpus's own listeners {lag['corpus']:.0f} ms. "
        "It is learned, and not part of the pipeline's delay.",
        "",
    ]
    lines += ["![generated vs appropriate reactions](reactions.png)", ""]
    out.write_text("\n".join(lines))

    streaming = results["_outputs"]["streaming"]
    targets = results["_targets"]
    appropriate = np.flatnonzero(targets["neighbours"][0])
    fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
    for ax, column in zip(axes, ["AU12", "Valence", "Arousal"], strict=True):
        c = EMOTION_NAMES.index(column)
        for j in appropriate:
            ax.plot(targets["listener"][j, :, c], color="tab:green", alpha=0.5, lw=1)
        for p in range(min(3, streaming.shape[1])):
            ax.plot(streaming[0, p, :, FACE_DIM + c], color="tab:blue", alpha=0.8, lw=1)
        ax.plot(targets["speaker"][0, :, c], color="tab:gray", lw=1, ls="--")
        ax.set_ylabel(column)
    axes[0].set_title("speaker 0: generated (blue, streaming), appropriate listeners (green), speaker (grey)")
    axes[-1].set_xlabel("frame (25 fps)")
    fig.tight_layout()
    fig.savefig(out.parent / "reactions.png", dpi=100)
    plt.close(fig)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a trained model and the baselines with the REACT metrics",
        description="Generate 10 reactions per speaker on a split (both directions), offline and at streaming "
        "settings, score them and the Random/Mime/MeanSeq/MeanFr baselines, and write a JSON and a report.",
    )
    p.add_argument("--run", required=True, type=Path, help="run folder of `fit` (holds model.pt)")
    p.add_argument("--data", required=True, type=Path, help="corpus root in the REACT layout")
    p.add_argument("--json", required=True, type=Path, help="where to write the metrics JSON")
    p.add_argument("--split", default="test", choices=["val", "test"], help="split to score (default: test)")
    p.add_argument("--report", type=Path, default=None, help="markdown report path (default: beside --json)")
    p.add_argument(
        "--speaker-faces", choices=SPEAKER_FACES, default=None,
        help="speaker faces the model sees: fitted (the corpus's arrays) or tracked (what the engine's tracker finds "
        "in the speaker videos, as live); default: what the model was trained on",
    )  # fmt: skip
    p.add_argument("--track-cache", type=Path, default=None, help="tracked-face folder (default DATA/tracked_faces)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainer.train import load_model, trained_speaker_faces

    torch.set_num_threads(2)
    model = load_model(args.run)
    faces = cast(SpeakerFaces, args.speaker_faces or trained_speaker_faces(args.run))
    results = evaluate(model, args.data, split=args.split, speaker_faces=faces, track_cache=args.track_cache)
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(public, indent=2))
    write_report(results, args.report or args.json.with_suffix(".md"))
    print(json.dumps({"model": public["model"], "baselines": public["baselines"]}, indent=2))
    return 0
