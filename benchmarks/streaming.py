"""Streaming benchmark: real-time factor, latency, seam jerk and streaming/offline FRCorr on a synthetic test split.

    .venv/bin/python benchmarks/streaming.py                                  # own corpus + tiny model (minutes)
    .venv/bin/python benchmarks/streaming.py --model models/base --data data/synth --predictions 10
    .venv/bin/python benchmarks/streaming.py --model engine/models/base --speaker-faces tracked --hops 8,3,2

Prints one JSON object:
    {"rtf": ..., "latency_ms": {"p50": ..., "p95": ...}, "seam_jerk_ratio": ..., "frcorr_streaming_over_offline": ...}

- rtf: `reactdiff-engine --fast` on a test speaker rendered to an mp4 (decode, MediaPipe tracking, ONNX Runtime
  with one thread, smoothing, avatar rendering, H.264): wall time / media time.
- latency_ms: the same file with `--realtime` (paced as a live speaker): per listener frame, the time its window's
  result was ready minus the arrival of the newest speaker input it read (engine.stats explains both modes).
- seam_jerk_ratio: on the emitted 25 fps listener frames (after One Euro) of the streaming runs, the mean absolute
  third difference across window seams over the mean elsewhere (engine.smoothing.seam_jerk_ratio), averaged
  (None at a hop of 3 or less: every third difference then touches a seam).
- frcorr_streaming_over_offline: FRCorr of the streaming engine (hop H, the model's sampler/K, One Euro; driven
  through StreamEngine by an in-memory source) over FRCorr of offline generation (whole clip, windows every W/2,
  DDIM with 10 steps), same speaker inputs, `--predictions` seeds each. With `--hops`, the streaming FRCorr at
  each hop (`frcorr.streaming_by_hop`); the ratio is the first hop's.
- behavioural_lag_ms: how far behind the speaker the listener reacts, learned, not pipeline delay: per test
  speaker, the lag (0-2 s) at which the speaker's smile best correlates with the listener's (mouthSmile, mean of
  both sides), for the streaming predictions (first hop) and for the corpus's own listeners; medians.
`--speaker-faces tracked` feeds the speaker faces the engine's tracker finds in the test videos (made with
`synth --video`, as the shipped model was trained on); the default feeds the corpus's fitted faces.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from engine.backends import create_backend
from engine.model_dir import load_model_dir
from engine.runtime import StreamConfig, StreamEngine, WindowModel
from engine.smoothing import seam_jerk_ratio
from engine.sources.base import AudioChunk, Media, Source, SourceKind, VideoFrame
from engine.windows import generate_windows
from renderer.face import FACE_DIM, FPS, clip_face
from renderer.video import write_face_media
from trainer.behaviour import median_reaction_lag_ms

REPO = Path(__file__).resolve().parents[1]
CHUNK = 320  # 20 ms audio chunks, like a live device
_DUMMY = np.zeros((2, 2, 3), np.uint8)


class ArraySource(Source):
    """A speaker held in memory: 20 ms audio chunks and 25 fps (dummy) video frames in media-time order."""

    kind = SourceKind.FILE

    def __init__(self, audio: NDArray[np.float32], frames: int) -> None:
        super().__init__()
        self.audio, self.frames = audio, frames
        self._closed = False

    @property
    def has_audio(self) -> bool:
        return True

    @property
    def has_video(self) -> bool:
        return True

    def __iter__(self) -> Iterator[Media]:
        video = 0
        for start in range(0, len(self.audio), CHUNK):
            t0 = start / 16000
            while video < self.frames and video / FPS <= t0:
                yield VideoFrame(_DUMMY, video / FPS, time.monotonic())
                video += 1
            if self._closed:
                return
            yield AudioChunk(self.audio[start : start + CHUNK], t0, time.monotonic())

    def close(self) -> None:
        self._closed = True


@dataclass
class ArrayTracker:
    """The corpus' own speaker faces (what the model was trained on), looked up by frame time."""

    faces: NDArray[np.float32]

    def track(self, rgb: NDArray[np.uint8], timestamp_s: float) -> Any:
        index = min(round(timestamp_s * FPS), len(self.faces) - 1)
        return type("Result", (), {"face": self.faces[index], "found": True})()


def prepare(work: Path, model: Path | None, data: Path | None, video: bool) -> tuple[Path, Path]:
    """The model directory and corpus to use: given ones, or made (once) under `work` (with speaker videos)."""
    from trainer.cli import main as trainer

    work.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = work / ("data-video" if video else "data")
        if not (data / "test.csv").exists():
            trainer(["synth", "--out", str(data), "--clips", "24", "--seconds", "20", "--seed", "0",
                     *(["--video"] if video else [])])  # fmt: skip
    if model is None:
        model = work / "model"
        if not (model / "manifest.json").exists():
            run = work / "run"
            if not (run / "model.pt").exists():
                trainer(["fit", "--config", str(REPO / "configs/tiny.toml"), "--data", str(data), "--out", str(run)])
            trainer(["export", "--run", str(run), "--out", str(model), "--fused", "default"])
    return model, data


def load_test(data: Path, speaker_faces: str) -> dict[str, Any]:
    from trainer.data import ReactDataset

    dataset = ReactDataset(data, "test", speaker_faces=speaker_faces)  # type: ignore[arg-type]
    if speaker_faces == "tracked":
        dataset.track()
    samples = [dataset[i] for i in range(len(dataset))]
    t = min(s.frames for s in samples)
    return {
        "audio": [s.speaker_audio[: t * 640] for s in samples],
        "face": np.stack([s.speaker_face[:t] for s in samples]).astype(np.float32),
        "listener": np.stack([s.listener_emotion[:t] for s in samples]).astype(np.float32),
        "listener_face": np.stack([s.listener_face[:t] for s in samples]).astype(np.float32),
        "speaker": np.stack([s.speaker_emotion[:t] for s in samples]).astype(np.float32),
        "neighbours": dataset.neighbours(),
        "frames": t,
    }


def streaming(
    model_dir: Path, test: dict[str, Any], predictions: int, hop: int | None, first_seed: int = 0
) -> tuple[NDArray[np.float32], list[float]]:
    """(N, P, T, 83) listener frames from StreamEngine (fast mode, `hop`) and the seam jerk ratio of every run."""
    n, t = len(test["audio"]), test["frames"]
    out = np.zeros((n, predictions, t, 83), np.float32)
    ratios = []
    with create_backend("onnxruntime", model_dir) as backend:
        model = WindowModel.from_backend(backend)
        runs = [(i, p) for i in range(n) for p in range(predictions)]
        for i, p in tqdm(runs, desc=f"streaming hop={hop or model.hop}", leave=False):
            source = ArraySource(test["audio"][i], t)
            engine = StreamEngine(model, source, tracker=ArrayTracker(test["face"][i]),
                                  config=StreamConfig(seed=first_seed + p, record=True, hop=hop))  # fmt: skip
            engine.run()
            smoothed = engine.recorded()[1][:t]
            out[i, p, : len(smoothed)] = smoothed
            if engine.hop > 3:  # at hop 3 or less every third difference touches a seam: no ratio
                ratios.append(seam_jerk_ratio(smoothed, engine.listener.seams))
    return out, ratios


def behavioural_lag_ms(test: dict[str, Any], generated: NDArray[np.float32]) -> dict[str, float]:
    """Median over the test pairs as listed (the first half of a split read both ways: a listener reacting to a
    speaker who talks) of the speaker-smile-to-listener-smile lag, generated (first prediction) and true."""
    rows = slice(0, max(1, len(test["face"]) // 2))
    return {
        "model": median_reaction_lag_ms(test["face"][rows], generated[rows, 0]),
        "corpus": median_reaction_lag_ms(test["face"][rows], test["listener_face"][rows]),
    }


def offline(model_dir: Path, test: dict[str, Any], predictions: int) -> NDArray[np.float32]:
    """(N, P, T, 25) emotions from whole-clip generation: windows every W/2, DDIM K=10, no smoothing."""
    from engine.features import audio_features

    model = load_model_dir(model_dir)
    audio = np.stack([audio_features(a)[: test["frames"]] for a in test["audio"]])
    present = np.ones((len(audio), 2), np.float32)
    out = np.zeros((len(audio), predictions, test["frames"], 25), np.float32)
    with create_backend("onnxruntime", model, steps=10, sampler="ddim") as backend:
        for p in tqdm(range(predictions), desc="offline", leave=False):
            frames = generate_windows(
                backend.run_window, audio, test["face"], present, window=model.window, hop=model.window // 2,
                latent_shape=model.latent_shape, listener_dim=model.listener_dim, seed=p,
                neutral_listener=model.neutral_listener,
            )  # fmt: skip
            out[:, p] = frames[..., FACE_DIM:]
    return out


def speaker_mp4(path: Path, audio: NDArray[np.float32], faces: NDArray[np.float32]) -> Path:
    """The speaker as a user would hand them in: a 320x240 avatar video at 25 fps with 16 kHz AAC audio."""
    write_face_media(path, clip_face(faces), audio, audio_rate=16000, size=(320, 240))
    return path


def engine_cli(*args: str) -> dict[str, Any]:
    """`reactdiff-engine ARGS --stats` in this process; returns the stats JSON."""
    from engine.cli import main

    stats = Path(args[args.index("--output") + 1]).with_suffix(".json")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([*args, "--stats", str(stats), "--quiet"])
    if code != 0:
        raise RuntimeError(f"reactdiff-engine {' '.join(args)} failed ({code}): {err.getvalue()}")
    return dict(json.loads(stats.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: a tiny model trained under --work)")
    parser.add_argument("--data", type=Path, help="corpus in the REACT layout (default: synthesised under --work)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-streaming", help="cache folder")
    parser.add_argument("--predictions", type=int, default=10, help="seeds per speaker for FRCorr (REACT: 10)")
    parser.add_argument("--first-seed", type=int, default=0, help="the streaming runs' seeds start here (default 0)")
    parser.add_argument("--skip-realtime", action="store_true", help="skip the real-time latency run")
    parser.add_argument(
        "--hops", type=lambda s: [int(h) for h in s.split(",")],
        help="hops to stream at (default: the model's); FRCorr for each, the first one's for the ratio and the rest",
    )  # fmt: skip
    parser.add_argument(
        "--speaker-faces", choices=["fitted", "tracked"], default="fitted",
        help="speaker faces fed to the model (tracked: the engine's tracker on the test videos)",
    )  # fmt: skip
    args = parser.parse_args()
    from trainer.metrics import fr_corr

    model_dir, data = prepare(args.work, args.model, args.data, video=args.speaker_faces == "tracked")
    test = load_test(data, args.speaker_faces)
    hops = args.hops or [None]
    clip = speaker_mp4(args.work / "speaker.mp4", test["audio"][0], test["face"][0])
    hop_args = [] if hops[0] is None else ["--hop", str(hops[0])]
    fast = engine_cli(
        "--model", str(model_dir), "--input", str(clip), "--output", str(args.work / "fast.mp4"), "--fast", *hop_args
    )  # fmt: skip
    live = None
    if not args.skip_realtime:
        live = engine_cli("--model", str(model_dir), "--input", str(clip), "--output", str(args.work / "live.mp4"),
                          "--realtime", *hop_args)  # fmt: skip
    by_hop, first = {}, None
    for hop in hops:
        pred, hop_ratios = streaming(model_dir, test, args.predictions, hop, args.first_seed)
        by_hop[str(hop or fast["hop"])] = fr_corr(pred[..., FACE_DIM:], test["listener"], test["neighbours"])
        if first is None:
            first, ratios = pred, hop_ratios
    assert first is not None
    offline_pred = offline(model_dir, test, args.predictions)
    fr_stream = by_hop[str(hops[0] or fast["hop"])]
    fr_offline = fr_corr(offline_pred, test["listener"], test["neighbours"])
    latency = (live or fast)["latency_ms"]
    result = {
        "rtf": fast["rtf"],
        "latency_ms": {"p50": latency["p50_ms"], "p95": latency["p95_ms"], "max": latency["max_ms"]},
        "latency_mode": "realtime" if live else "fast (simulated)",
        "seam_jerk_ratio": float(np.mean(ratios)) if ratios else None,
        "frcorr_streaming_over_offline": fr_stream / fr_offline if fr_offline else None,
        "frcorr": {"streaming": fr_stream, "offline": fr_offline, "streaming_by_hop": by_hop},
        "behavioural_lag_ms": behavioural_lag_ms(test, first),
        "fast_run": {k: fast[k] for k in ("media_s", "wall_s", "inference_rtf", "windows", "frames", "tracker")},
        "realtime_run": None if live is None else {k: live[k] for k in ("media_s", "windows", "frames", "latency_ms")},
        "setup": {
            "model": str(model_dir),
            "data": str(data),
            "test_samples": len(test["audio"]),
            "frames": test["frames"],
            "predictions": args.predictions,
            "hop": fast["hop"],
            "steps": fast["steps"],
            "sampler": fast["sampler"],
            "backend": fast["backend"],
            "speaker_faces": args.speaker_faces,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
