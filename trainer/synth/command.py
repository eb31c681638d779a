"""`reactdiff-trainer synth`: write the synthetic dyadic corpus in the REACT 2024 layout.

reactdiff-trainer synth --out data/synth --clips 100 --seconds 30 --seed 0 [--video]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trainer.cli import UserError
from trainer.synth.corpus import MAX_LISTENERS, MIN_SECONDS, SynthConfig, write_corpus
from trainer.synth.espeak import EspeakError
from trainer.synth.speech import DEFAULT_VOICES


def default_workers() -> int:
    """min(2, CPU cores): the corpus is written by a small process pool."""
    return min(2, os.cpu_count() or 1)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``synth`` sub-command."""
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic dyadic corpus (espeak-ng speech, speaker and listener faces) in the REACT layout",
        description=(
            "Write a synthetic speaker-listener corpus in the REACT 2024 layout: train/val/test splits with "
            "Audio_files (16 kHz wav), 3D_FV_files ((T, 58) npy), Emotion ((T, 25) csv), optional Video_files (mp4), "
            "the pairs CSVs and the appropriateness (neighbour) matrices. Speakers talk with espeak-ng voices; "
            "several listener personas react to each speaker. The same --seed gives byte-identical files."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the corpus into (created if missing)")
    parser.add_argument(
        "--clips",
        type=int,
        required=True,
        help="number of speaker-listener sessions, at least 3; rounded up to whole speaker scripts "
        "(max(3, ceil(CLIPS / LISTENERS)) scripts of LISTENERS sessions each)",
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help=f"length of each clip in seconds, at least {MIN_SECONDS:g} "
        "(default 30, as in REACT: 751 frames)"
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same bytes (default 0)"
    )
    parser.add_argument(
        "--listeners-per-speaker",
        type=int,
        default=3,
        metavar="LISTENERS",
        help=f"listener reactions, each from a different persona, per speaker script (1-{MAX_LISTENERS}, default 3)",
    )
    parser.add_argument(
        "--voices",
        default=",".join(DEFAULT_VOICES),
        help="comma-separated espeak-ng English voices to draw speakers and listeners from, as LANG or LANG+VARIANT "
        "(e.g. en-us,en-gb+f3); a voice without +VARIANT gets a random m1-m7/f1-f5 variant (default: %(default)s)",
    )
    parser.add_argument(
        "--video", action="store_true", help="also render 256x256 25 fps mp4 videos of the speaker and listener faces"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="worker processes; the output does not depend on it (default min(2, CPU cores) = %(default)s)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a corpus already in --out: removes its train/ val/ test/ folders, pairs CSVs, neighbour matrices "
        "and manifest, keeps other files (without it a non-empty --out is refused)",
    )
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The typed configuration behind the command-line options."""
    voices = tuple(v.strip() for v in str(args.voices).split(",") if v.strip())
    return SynthConfig(
        out=args.out,
        clips=args.clips,
        seconds=args.seconds,
        seed=args.seed,
        listeners_per_speaker=args.listeners_per_speaker,
        voices=voices,
        video=args.video,
        workers=args.workers,
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    """Write the corpus and print a one-line summary per split."""
    try:
        manifest = write_corpus(config_from_args(args))
    except EspeakError as exc:
        raise UserError(str(exc)) from exc
    counts = manifest["counts"]
    for split, sessions in counts["sessions"].items():
        print(f"{split}: {counts['scripts'][split]} speaker scripts, {sessions} sessions")
    print(f"wrote {args.out} ({counts['frames_per_clip']} frames per clip)")
    return 0
