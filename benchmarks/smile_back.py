"""Does the listener smile back at a real face? A speaker clip drawn from a real portrait goes through the engine as
a user's file would, and the listener's smile is read against the speaker's smile as the engine's tracker sees it.

    .venv/bin/python benchmarks/smile_back.py                          # the shipped model, a held-out portrait
    .venv/bin/python benchmarks/smile_back.py --portrait grace_hopper --seconds 60 --model models/base

1. `reactdiff-trainer clip --portrait NAME`: espeak-ng speech and a speaker face driven by it (smiles, laughs),
   drawn from the portrait with the photo avatar, as one mp4 with H.264 video and AAC audio.
2. `reactdiff-engine --input CLIP --fast --params-out P.npz`: the streaming engine, as a user runs it; P holds the
   listener's 58 face numbers per 40 ms frame with their media times.
3. The speaker's smile is tracked from the clip's video frames by the engine's own tracker (what the model saw),
   and the listener's mouthSmile (mean of both sides) is correlated with it at lags of 0 to 2 s (listener after
   speaker): `lagged_smile_correlation` is the best of those, `lag_ms` where it lies.

Prints one JSON object. Each run makes a new clip and listener (--seed picks them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.models import DEFAULT_MODEL_DIR  # noqa: E402
from engine.tracker import faces_per_frame  # noqa: E402
from renderer.face import FPS  # noqa: E402
from trainer.behaviour import lagged_correlation, smile  # noqa: E402
from trainer.data.tracked import track_video  # noqa: E402


def run_cli(main: Callable[[list[str]], int], args: list[str]) -> None:
    """Run a command-line entry point in this process; its output is kept unless it fails."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(args)
    if code != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({code}): {out.getvalue()}")


def tracked_smile(clip: Path) -> np.ndarray:
    """(T,) the speaker's smile per 40 ms frame, as the engine's tracker reads the clip's video (the trainer's
    tracking of a video, assigned to frames by the engine's rule)."""
    tracked = track_video(clip)
    frames = round(float(tracked["times"][-1]) * FPS) + 1
    faces, _ = faces_per_frame(tracked["times"], tracked["faces"], tracked["found"], frames)
    return smile(faces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portrait", default="grace_hopper", help="portrait name or photo (default: held out)")
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length (default 60)")
    parser.add_argument("--seed", type=int, default=3, help="speaker clip and listener seed")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: shipped)")
    parser.add_argument("--work", type=Path, default=None, help="keep the clip and params here (default: temp)")
    args = parser.parse_args()
    from engine.cli import main as engine
    from trainer.cli import main as trainer

    with tempfile.TemporaryDirectory() as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        clip, params = work / "speaker.mp4", work / "listener.npz"
        run_cli(trainer, ["clip", "--out", str(clip), "--seconds", str(args.seconds), "--seed", str(args.seed),
                          "--portrait", args.portrait])  # fmt: skip
        engine_args = ["--input", str(clip), "--output", str(work / "listener.mp4"), "--fast", "--quiet"]
        run_cli(
            engine, [*engine_args, "--model", str(args.model), "--seed", str(args.seed), "--params-out", str(params)]
        )
        speaker = tracked_smile(clip)
        listener = smile(np.load(params)["faces"])
    n = min(len(speaker), len(listener))
    r = lagged_correlation(speaker[:n], listener[:n])
    lag = int(np.argmax(r))
    print(json.dumps({
        "lagged_smile_correlation": round(float(r[lag]), 3), "lag_ms": lag * 1000 // FPS,
        "at_lag_0": round(float(r[0]), 3), "speaker_smile_mean": round(float(speaker.mean()), 3),
        "listener_smile_mean": round(float(listener.mean()), 3), "frames": n,
        "setup": {"portrait": args.portrait, "seconds": args.seconds, "seed": args.seed, "model": str(args.model)},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
