"""What the engine's tracker keeps of the face that drew a video, and what that leaves to score on each half of a
REACT split.

    .venv/bin/python benchmarks/tracked_input.py                       # data/synth_v2, test split
    .venv/bin/python benchmarks/tracked_input.py --data data/synth_v2_unseen

A synthetic corpus holds, for every clip, the 58 face numbers that drew its video and the emotion columns computed
from them; the model is served (and scored, `eval --speaker-faces tracked`) on the faces the engine's tracker finds
in that video instead. This measures the difference, on the speaker clips (the rows as listed: a person talking)
and on the listener clips (the swapped rows' input: a person listening, who moves less):

- fidelity: the correlation, within each clip, between what the tracker found and what drew the video, per face
  feature (left and right averaged) and per emotion column (`renderer.face.emotion_from_face` of the tracked face
  against the corpus's column), averaged over the clips; null where the drawn value never moves;
- mime: the Mime baseline's FRCorr on each half, copying the corpus's emotion columns (REACT's Mime) and the
  emotion of the tracked face (what a model sees);
- readout: FRCorr on each half of one causal linear prediction (ridge, the input's last 2 s at lags 0, 5, 12, 25
  and 50 frames) fitted on the train split's same half, from the corpus's emotion columns and from the tracked
  face: how much of the appropriate reaction the input holds for a simple reader.

With `--network` (torch, about 15 minutes on 2 cores), also a causal reader that learns: a 2-layer GRU over the
tracked face and the audio features (what the model gets), trained with a CCC loss on the train split's same half,
and, for the rows as listed, once more on the attentive personas' listeners only (ATTENTIVE). Its test FRCorr is
read every 300 steps and the best is kept: chosen on the test split, so an optimistic figure, not a fair score.

FRCorr is scaled to 10 predictions, as the official sum is (a deterministic prediction counts 10 times). Needs the
corpus tracked (`reactdiff-trainer track`; else it is tracked first). Prints one JSON object.
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

from renderer.face import EMOTION_NAMES, FACE_NAMES, emotion_from_face  # noqa: E402
from trainer.evaluate import Split, listening_rows, load_split  # noqa: E402
from trainer.metrics import fr_corr  # noqa: E402
from trainer.track_command import mean_correlation  # noqa: E402

FEATURES = (
    "browInnerUp", "browOuterUp", "browDown", "eyeBlink", "eyeSquint", "eyeWide", "cheekSquint", "jawOpen",
    "mouthSmile", "mouthFunnel", "mouthPucker", "mouthPress", "pitch", "yaw", "roll",
)  # fmt: skip
LAGS = (0, 5, 12, 25, 50)
RIDGE = 1.0
ATTENTIVE = ("mirror", "nodder", "enthusiast")
NETWORK_STEPS, NETWORK_CHECK, CROP = 1200, 300, 300


def feature(face: NDArray[np.float32], name: str) -> NDArray[np.float64]:
    """(clips, T) one face feature; a left/right pair averaged."""
    names = list(FACE_NAMES)
    if name in names:
        return face[..., names.index(name)].astype(np.float64)
    left, right = names.index(name + "Left"), names.index(name + "Right")
    return (face[..., left].astype(np.float64) + face[..., right]) / 2


def within_clip_corr(a: NDArray[np.floating], b: NDArray[np.floating]) -> float | None:
    """Mean over clips (rows) of the correlation over time of a and b; clips where either is still are left out."""
    corr = mean_correlation(a.T, b.T)  # (T, clips): each clip a dimension
    return None if np.isnan(corr) else round(corr, 3)


def lagged(x: NDArray[np.float32]) -> NDArray[np.float64]:
    """(clips, T, D) -> (clips, T, D * len(LAGS) + 1): the input at each lag (the first frame held), and a 1."""
    t = x.shape[1]
    parts = [x[:, np.maximum(np.arange(t) - lag, 0)] for lag in LAGS]
    return np.concatenate([*parts, np.ones((*x.shape[:2], 1))], axis=-1).astype(np.float64)


def readout(train_x: NDArray, train_y: NDArray, test_x: NDArray) -> NDArray[np.float32]:
    """Ridge regression from the lagged inputs to the target, fitted on the train clips; predictions on test."""
    x, y = lagged(train_x).reshape(-1, len(LAGS) * train_x.shape[-1] + 1), train_y.reshape(-1, train_y.shape[-1])
    weights = np.linalg.solve(x.T @ x + RIDGE * np.eye(x.shape[1]), x.T @ y)
    return (lagged(test_x) @ weights).astype(np.float32)


def frcorr(pred: NDArray[np.float32], split: Split, rows: slice) -> float:
    """FRCorr of one deterministic (clips, T, 25) prediction on `rows`, scaled to 10 predictions."""
    score = fr_corr(pred[rows][:, None], split.listener[rows], split.neighbours[rows, rows])
    return round(10 * float(score), 3)


def network_readout(train: Split, rows: NDArray[np.intp], test: Split, test_rows: slice) -> float:
    """Best test FRCorr (see the module docstring) of a causal GRU from the tracked face and audio features to the
    target emotion, trained on the train split's `rows`."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)

    def inputs(split: Split) -> NDArray[np.float32]:
        return np.concatenate([split.face, split.audio], axis=-1).astype(np.float32)

    x_train = inputs(train)[rows]
    mean, std = x_train.reshape(-1, x_train.shape[-1]).mean(0), x_train.reshape(-1, x_train.shape[-1]).std(0) + 1e-4
    x = torch.from_numpy((x_train - mean) / std)
    y = torch.from_numpy(train.listener[rows].astype(np.float32))
    x_test = torch.from_numpy((inputs(test) - mean) / std)
    encode = torch.nn.Linear(x.shape[-1], 128)
    gru = torch.nn.GRU(128, 128, num_layers=2, batch_first=True)
    decode = torch.nn.Linear(128, y.shape[-1])
    params = [*encode.parameters(), *gru.parameters(), *decode.parameters()]
    optimiser = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-2)

    def run(inp: torch.Tensor) -> torch.Tensor:
        return decode(gru(torch.relu(encode(inp)))[0])

    best = -np.inf
    for step in range(1, NETWORK_STEPS + 1):
        clips = torch.randint(len(x), (16,))
        start = int(torch.randint(0, x.shape[1] - CROP, ()))
        pred, target = run(x[clips, start : start + CROP]), y[clips, start : start + CROP]
        pm, tm = pred.mean(1, keepdim=True), target.mean(1, keepdim=True)
        covariance = ((pred - pm) * (target - tm)).mean(1)
        spread = pred.var(1, unbiased=False) + target.var(1, unbiased=False) + (pm - tm).squeeze(1) ** 2
        loss = -(2 * covariance / (spread + 1e-6)).mean()  # 1 - CCC, as FRCorr scores
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % NETWORK_CHECK == 0:
            with torch.no_grad():
                best = max(best, frcorr(run(x_test).numpy(), test, test_rows))
    return round(float(best), 3)


def halves(split: Split) -> dict[str, slice]:
    listening = listening_rows(split)
    if listening is None:
        raise SystemExit("tracked_input: the split is not two halves (listeners, then the same pairs swapped)")
    return {"listening": listening, "swapped": slice(listening.stop, 2 * listening.stop)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=REPO / "data" / "synth_v2", help="a corpus written by synth --video"
    )
    parser.add_argument("--split", default="test", choices=["val", "test"], help="the split measured (default test)")
    parser.add_argument("--network", action="store_true", help="also train the GRU reader (torch, ~15 min)")
    args = parser.parse_args()
    if not (args.data / "synth_manifest.json").is_file():
        raise SystemExit(f"tracked_input: {args.data} is not a corpus written by `reactdiff-trainer synth --video`")
    drawn, seen = load_split(args.data, args.split, "fitted", None), load_split(args.data, args.split, "tracked", None)
    train_seen = load_split(args.data, "train", "tracked", None)  # targets and emotion columns: the same either way
    test_rows, train_rows = halves(seen), halves(train_seen)
    seen_emotion = emotion_from_face(seen.face)
    clips = {"speaker_clips": test_rows["listening"], "listener_clips": test_rows["swapped"]}
    fidelity = {
        who: {
            "face": {
                name: within_clip_corr(feature(seen.face[r], name), feature(drawn.face[r], name)) for name in FEATURES
            },
            "emotion": {
                name: within_clip_corr(seen_emotion[r, :, c], seen.speaker[r, :, c])
                for c, name in enumerate(EMOTION_NAMES)
            },
        }
        for who, r in clips.items()
    }
    mime = {
        half: {"corpus_emotion": frcorr(seen.speaker, seen, r), "tracked_face": frcorr(seen_emotion, seen, r)}
        for half, r in test_rows.items()
    }
    reads = {}
    for half, r in test_rows.items():
        t = train_rows[half]
        reads[half] = {
            "from_corpus_emotion": frcorr(
                readout(train_seen.speaker[t], train_seen.listener[t], seen.speaker), seen, r
            ),
            "from_tracked_face": frcorr(readout(train_seen.face[t], train_seen.listener[t], seen.face), seen, r),
        }
    report = {}
    if args.network:
        listening = np.arange(train_rows["listening"].start, train_rows["listening"].stop)
        attentive = np.array([i for i in listening if train_seen.persona[i] in ATTENTIVE])
        swapped = np.arange(train_rows["swapped"].start, train_rows["swapped"].stop)
        report["network"] = {
            "listening": network_readout(train_seen, listening, seen, test_rows["listening"]),
            "listening_attentive": network_readout(train_seen, attentive, seen, test_rows["listening"]),
            "swapped": network_readout(train_seen, swapped, seen, test_rows["swapped"]),
        }
    print(json.dumps({
        "benchmark": "tracked_input", "data": str(args.data), "split": args.split, "clips": len(seen.face),
        "fidelity": fidelity, "mime": mime, "readout": reads, **report,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
