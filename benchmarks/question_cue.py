"""Can the model hear a question? How well the end of a question is told from the end of a statement in the
speaker audio features the model gets, and in a pitch track they lack.

    .venv/bin/python benchmarks/question_cue.py                     # the shipped corpus's 40 speaker scripts
    .venv/bin/python benchmarks/question_cue.py --scripts 60 --seed 1

The synthetic corpus's listeners raise their brows after the speaker's questions (trainer.synth.listener), and
a question differs from a statement in the voice only by its pitch (spoken higher, rising at the end). Each
script's speech is made again exactly as `synth` makes it (trainer.synth.speech.speak_monologue, from the seed);
for every statement or question, the last `--frames` 40 ms frames before it ends are described three ways:

- audio_features: `engine.features.audio_features`, what the model gets (log-mel bands, sub-frame energies,
  MFCC deltas);
- pitch: log F0 per frame against the speaker's median over the clip, and voicing (normalised autocorrelation
  of the frame and the 25 ms after it, 60-400 Hz, voiced above 0.4); a probe, not the engine's feature;
- both together.

A ridge classifier is fitted on the first scripts and scored on the rest (--test-share): accuracy and ROC AUC
(0.5 is chance). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.features import FRAME_SAMPLES, SAMPLE_RATE, WIN_SAMPLES, audio_features  # noqa: E402
from renderer.face import FPS  # noqa: E402
from trainer.synth.corpus import SynthConfig, script_rngs  # noqa: E402
from trainer.synth.espeak import find_espeak  # noqa: E402
from trainer.synth.speech import sample_voice_style, speak_monologue  # noqa: E402
from trainer.synth.text import SentenceKind  # noqa: E402

F0_RANGE = (60.0, 400.0)
VOICED = 0.4  # normalised autocorrelation at the pitch period above which a frame counts as voiced


def pitch_track(audio: NDArray[np.float32], frames: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(frames,) log F0 against the clip's median over voiced frames (0 where unvoiced), and (frames,) voicing."""
    shortest, longest = int(SAMPLE_RATE / F0_RANGE[1]), int(SAMPLE_RATE / F0_RANGE[0])
    log_f0, voiced = np.zeros(frames), np.zeros(frames)
    for t in range(frames):
        x = audio[t * FRAME_SAMPLES : (t + 1) * FRAME_SAMPLES + WIN_SAMPLES].astype(np.float64)
        if len(x) <= longest or x.std() < 1e-3:
            continue
        x -= x.mean()
        corr = np.correlate(x, x, "full")[len(x) - 1 :]
        period = shortest + int(np.argmax(corr[shortest:longest]))
        if corr[period] / corr[0] > VOICED:
            log_f0[t], voiced[t] = np.log(SAMPLE_RATE / period), 1.0
    if voiced.any():
        log_f0[voiced > 0] -= np.median(log_f0[voiced > 0])
    return log_f0, voiced


def utterance_ends(config: SynthConfig, scripts: int, frames: int) -> dict[str, NDArray]:
    """Per statement or question of every script: its last `frames` frames described three ways, whether it is a
    question, and its script."""
    binary = find_espeak()
    rows: dict[str, list] = {"audio_features": [], "pitch": [], "question": [], "script": []}
    for index in range(scripts):
        speech_rng = script_rngs(config.seed, index, config.listeners_per_speaker)[0]
        voice = sample_voice_style(speech_rng, config.voices)
        audio, utterances = speak_monologue(binary, speech_rng, voice, config.seconds)
        features = audio_features(audio)
        log_f0, voiced = pitch_track(audio, len(features))
        for utterance in utterances:
            end = round(utterance.end_s * FPS)
            told = utterance.kind in (SentenceKind.STATEMENT, SentenceKind.QUESTION)
            if not told or not frames <= end < len(features):
                continue
            rows["audio_features"].append(features[end - frames : end].ravel())
            rows["pitch"].append(np.concatenate([log_f0[end - frames : end], voiced[end - frames : end]]))
            rows["question"].append(utterance.kind is SentenceKind.QUESTION)
            rows["script"].append(index)
    return {name: np.asarray(values) for name, values in rows.items()}


def ridge_scores(
    x: NDArray, question: NDArray[np.bool_], train: NDArray[np.bool_], strength: float
) -> dict[str, float | None]:
    """Accuracy and ROC AUC on the rows not in `train` of a ridge classifier (targets -1/+1) fitted on `train`
    (AUC None where the held-out rows hold one kind only)."""
    mean, spread = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    z = np.c_[(x - mean) / spread, np.ones(len(x))]
    weights = np.linalg.solve(
        z[train].T @ z[train] + strength * np.eye(z.shape[1]), z[train].T @ (2.0 * question[train] - 1.0)
    )
    score, truth = z[~train] @ weights, question[~train]
    auc = float((score[truth][:, None] > score[~truth][None]).mean()) if truth.any() and (~truth).any() else None
    return {"accuracy": float(((score > 0) == truth).mean()), "auc": auc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=40, help="speaker scripts (default 40, the shipped corpus's)")
    parser.add_argument("--seed", type=int, default=0, help="the corpus seed (default 0, the shipped corpus's)")
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length (default 30)")
    parser.add_argument("--frames", type=int, default=12, help="frames before each end described (default 12)")
    parser.add_argument("--test-share", type=float, default=0.3, help="share of scripts held out (default 0.3)")
    parser.add_argument("--strength", type=float, default=10.0, help="ridge penalty (default 10)")
    args = parser.parse_args()
    if args.scripts < 4 or not 0 < args.test_share < 1 or args.frames < 1:
        parser.error("give --scripts 4 or more, --test-share between 0 and 1 and --frames 1 or more")
    config = SynthConfig(out=REPO, clips=3 * args.scripts, seconds=args.seconds, seed=args.seed)
    ends = utterance_ends(config, args.scripts, args.frames)
    train = ends["script"] < round(args.scripts * (1 - args.test_share))
    described = {
        "audio_features": ends["audio_features"],
        "pitch": ends["pitch"],
        "audio_features+pitch": np.c_[ends["audio_features"], ends["pitch"]],
    }
    question = ends["question"].astype(bool)
    held_out = float(question[~train].mean())
    print(json.dumps({
        "utterance_ends": len(question), "question_share": float(question.mean()), "test_ends": int((~train).sum()),
        "majority_accuracy": max(held_out, 1 - held_out),
        **{name: ridge_scores(x, question, train, args.strength) for name, x in described.items()},
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
