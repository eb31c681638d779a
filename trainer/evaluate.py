"""`reactdiff-trainer eval`: score a trained model and the baselines with the REACT metrics, write a report.

    reactdiff-trainer eval --run runs/tiny --data data/synth --json runs/tiny/eval.json

The model is scored twice, both through the engine's window loop: "offline" (whole clip available, windows
every W/2 frames, more sampler steps) and "streaming" (the live settings: hop H, K steps). Each speaker gets
10 predictions (seeds 0..9). The JSON holds {"model": {"offline": M, "streaming": M}, "baselines": {...}, ...};
on a synthetic corpus "ceiling" holds what its own listeners, drawn again, score (`corpus_ceiling`).
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

from engine.listener import guided_style, style_centre
from renderer.face import EMOTION_NAMES, FACE_DIM, emotion_from_face, motion_energy
from trainer.behaviour import NearestCentroid, median_reaction_lag_ms
from trainer.data import ReactDataset
from trainer.data.react import SPEAKER_FACES, SpeakerFaces
from trainer.model import LISTENER_DIM, ReactDiff

log = logging.getLogger(__name__)
PREDICTIONS = 10
SWEEP_PREDICTIONS = 3  # per speaker for the expressiveness sweep and each persona (FRCorr scaled to 10)
EXPRESSIVENESS = (0.5, 1.0, 1.5)


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
    persona: dict[str, Any] | None = None,
    expressiveness: float | None = None,
    temperature: float = 1.0,
) -> NDArray[np.float32]:
    """(N,T,57), (N,T,58) -> listener frames (N, predictions, T, 83); prediction p of chunk c uses seed (p, c).
    `persona` and `expressiveness` say who listens (`who_listens`); `temperature` as the engine's --temperature."""
    from trainer.generate import generate

    n, t = audio.shape[:2]
    out = np.empty((n, predictions, t, LISTENER_DIM), np.float32)
    chunks = [slice(s, min(s + batch, n)) for s in range(0, n, batch)]
    bar = tqdm(total=predictions * len(chunks), desc=f"sampling hop={setting.hop} K={setting.steps}", leave=False)
    for p in range(predictions):
        for c, rows in enumerate(chunks):
            style, level = who_listens(model, rows.stop - rows.start, persona, expressiveness)
            out[rows, p] = generate(
                model, audio[rows], face[rows], steps=setting.steps, sampler=setting.sampler, hop=setting.hop,
                seed=p * 1000 + c, face_found=None if face_found is None else face_found[rows], style=style,
                expressiveness=level, temperature=temperature,
            )  # fmt: skip
            bar.update(1)
    bar.close()
    return out


def guided_personas(model: ReactDiff, personas: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The named personas (as fit stores them) with their styles pushed by the model's style guidance from their
    centre, as the engine's listeners are (engine.listener.ListenerChoices)."""
    centre = style_centre([p["style"] for p in personas.values()], model.style.null.detach().cpu().numpy())
    g = model.cfg.style_guidance
    return {name: {**p, "style": guided_style(p["style"], centre, g)} for name, p in personas.items()}


def who_listens(
    model: ReactDiff, batch: int, persona: dict[str, Any] | None = None, expressiveness: float | None = None
) -> tuple[NDArray[np.float32] | None, NDArray[np.float32] | None]:
    """(style (B,D), expressiveness (B,2)) for a persona ({"style", "energy"}: one of `guided_personas`) or none,
    moving `expressiveness` times as much as that persona (or the corpus) does; None for what is not given."""
    style = None if persona is None else np.tile(np.asarray(persona["style"], np.float32), (batch, 1))
    if expressiveness is None:
        return style, None
    base = float(model.energy_mean) if persona is None else float(persona["energy"])
    level = np.log(expressiveness * base / float(model.energy_mean))
    return style, np.tile(np.array([level, 1.0], np.float32), (batch, 1))


def _stack(arrays: list[NDArray]) -> NDArray[np.float32]:
    t = min(len(a) for a in arrays)
    return np.stack([a[:t] for a in arrays]).astype(np.float32)


@dataclass(frozen=True)
class Split:
    """One split's speaker inputs (as the model sees them), targets and appropriateness, stacked to the shortest
    clip: audio (N,T,57), face (N,T,58), found (N,T), listeners (N,T,83), speaker emotion (N,T,25),
    neighbours (N,N), each sample's listener persona where the corpus names one, and its listener's clip id."""

    audio: NDArray[np.float32]
    face: NDArray[np.float32]
    found: NDArray[np.bool_]
    listeners: NDArray[np.float32]
    speaker: NDArray[np.float32]
    neighbours: NDArray[np.bool_]
    persona: list[str | None]
    listener_ids: list[str]

    @property
    def listener(self) -> NDArray[np.float32]:
        """(N,T,25) the listeners' emotions: what the REACT metrics score."""
        return self.listeners[..., FACE_DIM:]


def load_split(data: Path, split: str, speaker_faces: SpeakerFaces, track_cache: Path | None) -> Split:
    """`split` of the corpus at `data`, speaker faces fitted or tracked (tracked first where not cached)."""
    from trainer.train import prepare_arrays

    dataset = ReactDataset(data, split, speaker_faces=speaker_faces, track_cache=track_cache)
    if dataset.tracked is not None:
        dataset.track(workers=2)
    arrays = prepare_arrays(dataset)
    return Split(
        audio=_stack(arrays.audio), face=_stack(arrays.face), found=_stack(arrays.face_found).astype(np.bool_),
        listeners=_stack(arrays.listener), speaker=_stack(arrays.speaker_emotion),
        neighbours=ReactDataset(data, split).neighbours(), persona=arrays.persona,
        listener_ids=[listener for _, listener in arrays.ids],
    )  # fmt: skip


def score(frames: NDArray[np.float32], split: Split) -> dict[str, Any]:
    """The REACT metrics of (N,S,T,83) generated frames, plus the corrected FRSyn, coverage and motion energy."""
    from trainer.metrics import compute_all, coverage, fr_syn

    emotion = frames[..., FACE_DIM:]
    scores: dict[str, Any] = compute_all(emotion, split.listener, split.speaker, split.neighbours, workers=2)
    scores["FRSyn_corrected"] = fr_syn(emotion, split.speaker, corrected=True)
    return scores | coverage(emotion, split.listener, split.neighbours) | {"motion_energy": motion_energy(frames)}


def quick_score(frames: NDArray[np.float32], split: Split, rows: slice = slice(None)) -> dict[str, float]:
    """FRCorr (scaled to 10 predictions, as the official sum is) and motion energy of (N,S,T,83) frames, the
    generated frames of `rows` of the split (all by default)."""
    from trainer.metrics import fr_corr

    listener, neighbours = split.listener[rows], split.neighbours[rows, rows]
    per_prediction = fr_corr(frames[..., FACE_DIM:], listener, neighbours) / frames.shape[1]
    return {"FRCorr": PREDICTIONS * per_prediction, "motion_energy": motion_energy(frames)}


def evaluate(
    model: ReactDiff,
    data: Path,
    *,
    split: str = "test",
    predictions: int = PREDICTIONS,
    speaker_faces: SpeakerFaces = "fitted",
    track_cache: Path | None = None,
    personas: dict[str, dict[str, Any]] | None = None,
    unseen: Path | None = None,
) -> dict[str, Any]:
    """Metrics for the model in both settings and for every baseline, on `split` (both directions); at streaming
    settings also: the appropriate reactions' own diversity, an expressiveness sweep, each named persona (from
    `personas`, as fit stores them) and, with `unseen`, the same split of a corpus whose speakers were drawn from
    portraits training never used.

    `speaker_faces="tracked"`: the model sees the speaker faces the engine's tracker finds in the test videos
    (tracked first where not cached), as it would live; the baselines and targets are unchanged.
    """
    from trainer.baselines import BASELINES
    from trainer.metrics import appropriate_fr_div, compute_all
    from trainer.train import prepare_arrays

    test = load_split(data, split, speaker_faces, track_cache)
    ceiling = corpus_ceiling(data, split, test, predictions, min(SWEEP_PREDICTIONS, predictions))  # no model
    train = prepare_arrays(ReactDataset(data, "train"))  # the baselines' listener pool, the personas' centroids
    results: dict[str, Any] = {"model": {}, "baselines": {}}
    outputs: dict[str, NDArray] = {}
    for name, setting in settings_for(model).items():
        frames = predict(model, test.audio, test.face, setting, predictions=predictions, face_found=test.found)
        outputs[name] = frames
        results["model"][name] = score(frames, test)
    train_listeners = _stack(train.listener)
    rng = np.random.default_rng(0)
    for name, baseline in BASELINES.items():
        pred = baseline(test.speaker, train_listeners[..., FACE_DIM:], samples=predictions, rng=rng)
        results["baselines"][name] = compute_all(pred, test.listener, test.speaker, test.neighbours, workers=2)
        outputs[f"baseline {name}"] = pred
    if speaker_faces == "tracked":  # Mime reading what the model reads: the emotion of the tracked speaker face
        pred = BASELINES["mime"](emotion_from_face(test.face), train_listeners[..., FACE_DIM:], samples=predictions)
        results["baselines"]["mime_tracked"] = compute_all(
            pred, test.listener, test.speaker, test.neighbours, workers=2
        )
        outputs["baseline mime_tracked"] = pred
    results["directions"] = direction_scores(outputs, test)
    results["ceiling"] = ceiling
    results["appropriate"] = {
        "FRDiv": appropriate_fr_div(test.listener, test.neighbours), "motion_energy": motion_energy(test.listeners)
    }  # fmt: skip
    streaming = settings_for(model)["streaming"]
    sweep = min(SWEEP_PREDICTIONS, predictions)
    results["expressiveness"] = expressiveness_sweep(model, test, streaming, sweep)
    if personas:
        results["personas"] = persona_scores(model, test, train, personas, streaming, sweep)
    if unseen is not None:
        other = load_split(unseen, split, speaker_faces, track_cache=None)
        frames = predict(model, other.audio, other.face, streaming, predictions=predictions, face_found=other.found)
        results["unseen"] = {"data": str(unseen), "streaming": score(frames, other)}
    listening = listening_rows(test) or slice(None)  # where a listener reacts to a speaker who talks
    results["behaviour"] = {  # learned, not the pipeline's delay: the first prediction of each speaker
        "reaction_lag_ms": {
            "model": median_reaction_lag_ms(test.face[listening], outputs["streaming"][listening, 0]),
            "corpus": median_reaction_lag_ms(test.face[listening], test.listeners[listening]),
        }
    }
    results["settings"] = {k: vars(v) for k, v in settings_for(model).items()}
    results["data"] = {
        "split": split, "samples": len(test.audio), "frames": int(test.audio.shape[1]), "speaker_faces": speaker_faces,
    }  # fmt: skip
    results["_outputs"] = outputs
    results["_targets"] = {"listener": test.listener, "speaker": test.speaker, "neighbours": test.neighbours}
    return results


def listening_rows(test: Split) -> slice | None:
    """Rows 0..M-1 of a split scored both ways (the pairs as listed: listeners reacting to speakers), or None
    where the split is not two such halves (its appropriate listeners cross them)."""
    m = len(test.audio) // 2
    if m == 0 or 2 * m != len(test.audio) or test.neighbours[:m, m:].any() or test.neighbours[m:, :m].any():
        return None
    return slice(0, m)


def direction_scores(outputs: dict[str, NDArray], test: Split) -> dict[str, dict[str, float]]:
    """FRCorr of the model's streaming and offline outputs and of the Mime baseline in each direction of a split
    scored both ways: "listening" (rows 0..M-1, the pairs as listed: the corpus's listeners reacting to its
    speakers, what the engine does) and "swapped" (rows M..2M-1: the speaker's face asked for from the listener's)."""
    from trainer.metrics import fr_corr

    listening = listening_rows(test)
    if listening is None:
        return {}
    rows = {"listening": listening, "swapped": slice(listening.stop, 2 * listening.stop)}
    scored = {
        "model (streaming)": "streaming", "model (offline)": "offline", "baseline mime": "baseline mime",
        "baseline mime (tracked)": "baseline mime_tracked",
    }  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for direction, r in rows.items():
        out[direction] = {
            name: fr_corr(outputs[key][r][..., -test.listener.shape[-1] :], test.listener[r], test.neighbours[r, r])
            for name, key in scored.items()
            if key in outputs
        }
    return out


def corpus_ceiling(data: Path, split: str, test: Split, draws: int, persona_draws: int) -> dict[str, Any] | None:
    """What a model that had learned the synthetic corpus perfectly would score on the rows as listed: fresh
    listeners per sample from the generator that wrote the corpus (trainer.synth.corpus.redraw_listeners), scored
    as the model is (FRDiv, motion energy, coverage, FRCorr summed over the draws): `draws` of any persona (a
    listener who is no one in particular: the default model's task) and of the sample's own persona, and
    `persona_draws` of each named persona (the ceiling of each row of the persona table; FRCorr scaled to 10).

    None, with the reason logged, where the split is not two halves, the corpus has no synth manifest (REACT's
    own data), or it was written by another version of the generator (its speakers do not come out the same).
    The swapped rows have no such ceiling: nothing in the generator draws a speaker from a listener."""
    from trainer.metrics import coverage, fr_corr, fr_div
    from trainer.synth import corpus
    from trainer.synth.espeak import EspeakError, find_espeak
    from trainer.synth.listener import PERSONA_NAMES

    rows = listening_rows(test)
    named = [corpus.session_of(clip) for clip in test.listener_ids[rows or slice(0)]]
    sessions = [session for session in named if session is not None]
    if rows is None or len(sessions) < len(named) or not (data / corpus.MANIFEST).is_file():
        log.info("no ceiling: %s is not a synthetic corpus scored both ways", data)
        return None
    config = corpus.config_from_manifest(data)
    try:
        binary = find_espeak()
    except EspeakError as exc:
        log.warning("no ceiling: %s", exc)
        return None
    asked: dict[str | None, int] = {corpus.ANY_PERSONA: draws, None: draws}
    asked |= {name: persona_draws for name in PERSONA_NAMES}
    drawn: dict[int, dict[str | None, list[NDArray[np.float32]]]] = {}
    for script, listener in tqdm(sessions, desc="corpus ceiling", leave=False):
        if script in drawn:
            continue
        speaker, drawn[script] = corpus.redraw_listeners(binary, config, script, asked)
        stored = corpus.clip_path(
            data, split, "3D_FV_files", corpus.session_name(script, listener), corpus.SPEAKER_ROLE, "npy"
        )  # fmt: skip
        if not np.array_equal(np.load(stored), speaker.astype(np.float32)):
            log.warning("no ceiling: %s is not what this generator draws for script %d", stored, script)
            return None
    listeners, neighbours = test.listener[rows], test.neighbours[rows, rows]
    scores: dict[str, Any] = {}
    for persona in asked:
        key = {corpus.ANY_PERSONA: "any_persona", None: "same_persona"}.get(persona) or str(persona)
        faces = np.stack([drawn[script][persona][listener][:, : listeners.shape[1]] for script, listener in sessions])
        emotion = emotion_from_face(faces)
        scores[key] = {
            "FRCorr": fr_corr(emotion, listeners, neighbours),
            "FRDiv": fr_div(emotion),
            "motion_energy": motion_energy(faces),
        } | coverage(emotion, listeners, neighbours)
    by_persona = {name: scores.pop(name) for name in PERSONA_NAMES}
    for one in by_persona.values():  # scaled to 10, as the persona table's FRCorr is
        one["FRCorr"] *= PREDICTIONS / persona_draws
    return {"draws": draws, "persona_draws": persona_draws, "listening": scores | {"by_persona": by_persona}}


def expressiveness_sweep(
    model: ReactDiff, test: Split, setting: Setting, predictions: int
) -> dict[str, dict[str, float]]:
    """FRCorr and motion energy at each of EXPRESSIVENESS (no persona: relative to the corpus's mean energy), and
    "default" with none given, from the same seeds and number of predictions (so the rows compare like for like)."""
    sweep = {}
    for x in (*EXPRESSIVENESS, None):
        frames = predict(
            model, test.audio, test.face, setting, predictions=predictions, face_found=test.found,
            expressiveness=x,
        )  # fmt: skip
        sweep["default" if x is None else f"{x:g}"] = quick_score(frames, test)
    return sweep


def persona_scores(
    model: ReactDiff, test: Split, train: Any, personas: dict[str, dict[str, Any]], setting: Setting, predictions: int
) -> dict[str, Any]:
    """Each named persona's FRCorr and motion energy (against the corpus's listeners of that persona), and how
    often a nearest-centroid classifier, fitted on the training listeners' reactions, names the persona behind
    the model's reactions (and behind the test listeners' own, its ceiling)."""
    by_persona: dict[str, dict[str, float | None]] = {}
    generated: dict[str, NDArray[np.float32]] = {}
    listening = listening_rows(test)
    rows = listening or slice(None)
    for name, persona in guided_personas(model, personas).items():
        frames = predict(
            model, test.audio, test.face, setting, predictions=predictions, face_found=test.found, persona=persona,
        )  # fmt: skip
        generated[name] = frames[..., :FACE_DIM]
        theirs = [k for k, p in enumerate(test.persona) if p == name]
        corpus = motion_energy(test.listeners[theirs]) if theirs else None
        by_persona[name] = {
            **quick_score(frames, test), "motion_energy_corpus": corpus,
            "FRCorr_listening": None if listening is None else quick_score(frames[rows], test, rows)["FRCorr"],
        }  # fmt: skip
    labelled = [(p, listener) for p, listener in zip(train.persona, train.listener, strict=True) if p is not None]
    trained = {p for p, _ in labelled}
    references = {name: _stack([x for p, x in labelled if p == name]) for name in personas if name in trained}
    classifier = NearestCentroid(references)
    own = {name: test.listeners[[k for k, p in enumerate(test.persona) if p == name]] for name in references}

    def named(frames: NDArray[np.float32]) -> NDArray[np.float32]:  # (N, S, T, 58) -> (N*S, T, 58)
        return frames.reshape(-1, *frames.shape[2:])

    return {
        "by_persona": by_persona,
        "classifier_accuracy": classifier.accuracy({n: named(g) for n, g in generated.items() if n in references}),
        "classifier_accuracy_listening": classifier.accuracy(
            {n: named(g[rows]) for n, g in generated.items() if n in references}
        ),
        "classifier_accuracy_corpus": classifier.accuracy({n: r for n, r in own.items() if len(r)}),
        "predictions": predictions,
    }


def write_report(results: dict[str, Any], out: Path) -> None:
    """Markdown table of every metric plus a plot of generated vs appropriate reactions for one speaker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn", "FRSyn_corrected", "motion_energy"]
    rows = [(f"model ({k})", v) for k, v in results["model"].items()]
    if "unseen" in results:
        rows.append(("model (streaming, unseen portraits)", results["unseen"]["streaming"]))
    rows += [(f"baseline {k}", v) for k, v in results["baselines"].items()]
    data = results["data"]
    faces = {"tracked": "tracked by the engine's face tracker from the speaker videos", "fitted": "the corpus's arrays"}
    where = f"Split `{data['split']}`, {data['samples']} samples; speaker faces: {faces[data['speaker_faces']]}."
    lines = ["# Evaluation", "", where, ""]
    lines += ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_cell(m.get(k)) for k in keys) + " |" for name, m in rows]
    lines += [
        "", "FRCorr is summed over the 10 predictions per speaker, as the official code does. FRSyn scores the first "
        "prediction only and any constant column makes it 49 (the official quirk); FRSyn_corrected leaves constant "
        "columns out. motion_energy: the mean per-frame speed of the 58 face numbers.", "",
    ]  # fmt: skip
    if "mime_tracked" in results["baselines"]:
        lines += [
            "Mime copies the speaker's emotion columns from the corpus's files; mime_tracked copies the emotion of "
            "the speaker face the engine's tracker finds in the video (renderer.face.emotion_from_face): what the "
            "model sees.", "",
        ]  # fmt: skip
    lines += _direction_lines(results) + _diversity_lines(results) + _persona_lines(results)
    lag = results["behaviour"]["reaction_lag_ms"]
    lines += [
        f"Behavioural lag (median over the rows as listed of the lag at which the listener's smile best follows the "
        f"speaker's, 0-2 s): model (streaming) {lag['model']:.0f} ms, the corpus's own listeners {lag['corpus']:.0f} "
        "ms. It is learned, and not part of the pipeline's delay.",
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


def _cell(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"


def _direction_lines(results: dict[str, Any]) -> list[str]:
    """FRCorr in each direction of the split: the listeners' own, and the swapped rows."""
    directions = results.get("directions") or {}
    if not directions:
        return []
    lines = [
        "## By direction", "",
        "REACT scores both directions of each pair: the rows as listed (the corpus's listeners reacting to its "
        "speakers: what the engine does) and the same pairs swapped (the speaker's face asked for from the "
        "listener's). FRCorr of each half:", "",
        "| | " + " | ".join(directions) + " |", "|---" * (len(directions) + 1) + "|",
    ]  # fmt: skip
    names = list(next(iter(directions.values())))
    lines += [f"| {n} | " + " | ".join(f"{d[n]:.4f}" for d in directions.values()) + " |" for n in names]
    ceiling = results.get("ceiling")
    if not ceiling:
        return [*lines, ""]
    drawn = ceiling["listening"]
    lines += [
        f"| corpus's listeners drawn again, {who} | {drawn[key]['FRCorr']:.4f} |" + " — |" * (len(directions) - 1)
        for key, who in (("any_persona", "any persona"), ("same_persona", "the row's persona"))
    ]
    return [
        *lines, "",
        f"The last two rows are the ceiling of a model that learned the corpus perfectly: {ceiling['draws']} fresh "
        "listeners per speaker from the generator that wrote the corpus, of any persona (what the model does when "
        "no persona is named) and of the row's own persona (FRDiv "
        f"{drawn['any_persona']['FRDiv']:.4f} and {drawn['same_persona']['FRDiv']:.4f}). Nothing in the generator "
        "draws a speaker from a listener, so the swapped half has none.", "",
    ]  # fmt: skip


def _diversity_lines(results: dict[str, Any]) -> list[str]:
    """The appropriate reactions' own diversity against the model's, coverage, and the expressiveness sweep."""
    model, ceiling = results["model"]["streaming"], results["appropriate"]
    lines = [
        "## Diversity, coverage, expressiveness (streaming)", "",
        f"The appropriate reactions themselves differ by FRDiv {ceiling['FRDiv']:.4f} (their motion energy "
        f"{ceiling['motion_energy']:.5f}); the model's 10 samples per speaker by {model['FRDiv']:.4f} "
        f"({model['FRDiv'] / max(ceiling['FRDiv'], 1e-12):.2f} x; energy {model['motion_energy']:.5f}). Coverage: "
        f"each appropriate reaction's best CCC over the samples, averaged, is {model['coverage']:.3f}, against "
        f"{model['precision']:.3f} for each sample's best CCC over the appropriate reactions "
        f"({model['coverage'] / max(model['precision'], 1e-12):.2f} x).", "",
        "Expressiveness: every row from the same seeds and number of predictions per speaker (FRCorr scaled to 10).",
        "", "| expressiveness | FRCorr | motion energy |", "|---|---|---|",
    ]  # fmt: skip
    sweep = results["expressiveness"]
    lines += [f"| {'(not given)' if x == 'default' else x} | {m['FRCorr']:.4f} | {m['motion_energy']:.5f} |"
              for x, m in sweep.items()]  # fmt: skip
    return [*lines, ""]


def _persona_lines(results: dict[str, Any]) -> list[str]:
    if "personas" not in results:
        return []
    p = results["personas"]
    lines = [
        "## Personas (streaming)", "",
        f"A nearest-centroid classifier on per-dimension mean, spread and speed, fitted on the training listeners, "
        f"names the persona behind the model's reactions {100 * p['classifier_accuracy']:.0f} % of the time "
        f"({100 * p['classifier_accuracy_listening']:.0f} % on the rows as listed, where the "
        f"speaker talks; {100 * p['classifier_accuracy_corpus']:.0f} % for the test listeners' own reactions).", "",
        "| persona | FRCorr | FRCorr, rows as listed | ceiling, rows as listed | motion energy | corpus's energy |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    ceiling = (results.get("ceiling") or {}).get("listening", {}).get("by_persona", {})
    for name, m in p["by_persona"].items():
        best = ceiling.get(name, {}).get("FRCorr")
        lines.append(
            f"| {name} | {m['FRCorr']:.4f} | {_cell(m.get('FRCorr_listening'))} | {_cell(best)} | "
            f"{m['motion_energy']:.5f} | {_cell(m['motion_energy_corpus'])} |"
        )
    lines += ["", f"{p['predictions']} predictions per speaker; FRCorr scaled to 10."]
    if ceiling:
        lines[-1] += (
            " Ceiling: fresh listeners of that persona drawn for every speaker by the generator that wrote the "
            "corpus, scored the same way: what the model would score with that persona named had it learned the "
            "corpus perfectly."
        )
    return [*lines, ""]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a trained model and the baselines with the REACT metrics",
        description="Generate 10 reactions per speaker on a split (both directions), offline and at streaming "
        "settings, score them and the Random/Mime/MeanSeq/MeanFr baselines, and write a JSON and a report. On a "
        "corpus written by `synth`, also its ceiling: fresh listeners drawn for the same speakers by the generator "
        "that wrote it (needs espeak-ng, as synth does), scored as the model is.",
    )
    p.add_argument("--run", required=True, type=Path, help="run folder of `fit` (holds model.pt)")
    p.add_argument("--data", required=True, type=Path, help="corpus root in the REACT layout")
    p.add_argument("--json", required=True, type=Path, help="where to write the metrics JSON")
    p.add_argument("--split", default="test", choices=["val", "test"], help="split to score (default: test)")
    p.add_argument("--report", type=Path, default=None, help="markdown report path (default: beside --json)")
    p.add_argument(
        "--predictions", type=int, default=PREDICTIONS,
        help=f"reactions per speaker (default {PREDICTIONS}, as REACT; fewer for a quick look; the expressiveness "
        f"sweep and each persona take at most {SWEEP_PREDICTIONS})",
    )  # fmt: skip
    p.add_argument(
        "--speaker-faces", choices=SPEAKER_FACES, default=None,
        help="speaker faces the model sees: fitted (the corpus's arrays) or tracked (what the engine's tracker finds "
        "in the speaker videos, as live); default: what the model was trained on",
    )  # fmt: skip
    p.add_argument("--track-cache", type=Path, default=None, help="tracked-face folder (default DATA/tracked_faces)")
    p.add_argument(
        "--unseen", type=Path, default=None,
        help="the same corpus rendered from portraits training never used (synth --video with the unseen pool): "
        "its split is scored too, at streaming settings",
    )  # fmt: skip
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainer.cli import UserError
    from trainer.train import load_model, load_personas, trained_speaker_faces

    torch.set_num_threads(2)
    model = load_model(args.run)
    faces = cast(SpeakerFaces, args.speaker_faces or trained_speaker_faces(args.run))
    if args.predictions < 2:
        raise UserError(f"--predictions {args.predictions}: the diversity scores need at least 2")
    results = evaluate(
        model, args.data, split=args.split, speaker_faces=faces, track_cache=args.track_cache,
        personas=load_personas(args.run), unseen=args.unseen, predictions=args.predictions,
    )  # fmt: skip
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(public, indent=2))
    write_report(results, args.report or args.json.with_suffix(".md"))
    print(json.dumps({"model": public["model"], "baselines": public["baselines"]}, indent=2))
    return 0
