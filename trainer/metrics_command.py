"""`reactdiff-trainer metrics`: score any predictions with the REACT challenge metrics.

    reactdiff-trainer metrics --pred P.npy --listener L.npy --speaker S.npy --neighbours N.npy --json

P is (N, 10, T, 25) predicted listener emotions, L and S the real listener and speaker emotions (N, T, 25), N the
(N, N) 0/1 appropriateness matrix (row k, column j = 1: listener j is an appropriate reaction to sample k).
Prints one JSON object with FRCorr, FRDist, FRDiv, FRVar, FRDvs, FRSyn (or a table without --json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trainer.cli import UserError
from trainer.metrics import METRIC_NAMES, compute_all

# name -> (which way is better, what it measures)
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "FRCorr": ("higher", "appropriateness: best CCC with an appropriate listener"),
    "FRDist": ("lower", "appropriateness: smallest DTW cost to an appropriate listener"),
    "FRDiv": ("higher", "diversity among one speaker's predictions"),
    "FRVar": ("higher", "movement over time within a prediction"),
    "FRDvs": ("higher", "diversity across speakers"),
    "FRSyn": ("lower", "frames of lag to the speaker at peak correlation"),
}


def load_array(path: Path, flag: str) -> NDArray[Any]:
    """Load one .npy file named on the command line; errors name the flag and the path."""
    if not path.is_file():
        raise UserError(f"{flag}: no such file: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"{flag}: {path} is not a readable .npy array ({exc})") from exc


def format_table(scores: dict[str, float], *, corrected: bool) -> str:
    """A readable table of the six metrics."""
    lines = [f"REACT metrics ({'corrected' if corrected else 'as the official challenge code computes them'})"]
    lines += [f"{'metric':<8} {'value':>10}  {'better':<7} measures"]
    for name in METRIC_NAMES:
        better, what = DESCRIPTIONS[name]
        lines.append(f"{name:<8} {scores[name]:>10.4f}  {better:<7} {what}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handler of `reactdiff-trainer metrics`."""
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    arrays = {
        flag: load_array(getattr(args, flag), f"--{flag}") for flag in ("pred", "listener", "speaker", "neighbours")
    }
    scores = compute_all(
        arrays["pred"],
        arrays["listener"],
        arrays["speaker"],
        arrays["neighbours"],
        corrected=args.corrected,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(json.dumps(scores) if args.json else format_table(scores, corrected=args.corrected))
    return 0


def add_parser(subparsers: Any) -> None:
    """Register `metrics` on the `reactdiff-trainer` parser."""
    p = subparsers.add_parser(
        "metrics",
        help="score predictions with the REACT metrics (FRCorr, FRDist, FRDiv, FRVar, FRDvs, FRSyn)",
        description="Score predicted listener emotions with the REACT challenge metrics, computed as the official "
        "challenge code computes them (or corrected with --corrected).",
    )
    p.add_argument("--pred", type=Path, required=True, help=".npy of predictions, shape (N, 10, T, 25)")
    p.add_argument("--listener", type=Path, required=True, help=".npy of the real listener emotions, (N, T, 25)")
    p.add_argument("--speaker", type=Path, required=True, help=".npy of the speaker emotions, (N, T, 25), for FRSyn")
    p.add_argument(
        "--neighbours",
        type=Path,
        required=True,
        help=".npy (N, N) 0/1 matrix: row k, column j = 1 when listener j is an appropriate reaction to sample k",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--corrected",
        action="store_true",
        help="corrected variants: FRCorr/FRDist averaged over predictions, constant dimensions left out, "
        "FRSyn over all predictions",
    )
    p.add_argument(
        "--workers", type=int, default=2, help="processes for FRDist's DTWs (default 2; the result does not change)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars on stderr")
    p.set_defaults(handler=run)
