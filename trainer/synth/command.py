"""`reactdiff-trainer synth`: write the synthetic dyadic corpus in the REACT 2024 layout.

reactdiff-trainer synth --out data/synth --clips 100 --seconds 30 --seed 0 [--video]
reactdiff-trainer synth --out data/synth_unseen --clips 100 --seconds 30 --seed 0 --video --portraits unseen
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trainer.cli import UserError
from trainer.synth.corpus import MAX_LISTENERS, MIN_SECONDS, SynthConfig, SynthConfigError, write_corpus
from trainer.synth.espeak import EspeakError
from trainer.synth.looks import POOLS, LookOptions
from trainer.synth.portraits import PORTRAITS
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
        "--video",
        action="store_true",
        help="also render 256x256 25 fps mp4 videos of the speaker and listener faces, each clip a person of its "
        "own (a real portrait, or a vector style) seen through a camera of its own: mirrored or not, the face "
        "28-60%% of the frame's height anywhere that keeps it inside (the frame may cut hair and shoulders), white "
        "balance, exposure, contrast, gamma, saturation, a light from one side, lost sharpness, H.264 crf 18-36",
    )
    defaults = LookOptions()
    names = ", ".join(f"{name} ({p.pool})" for name, p in PORTRAITS.items())
    parser.add_argument(
        "--portraits",
        choices=POOLS,
        default=None,
        help="with --video: the pool of real portraits the people are drawn from; 'unseen' holds people that a "
        "'train' corpus never shows, for scoring a model on faces it never saw (the same --seed gives the same "
        "audio, faces and cameras, other people); 'none': vector styles only "
        f"(default {defaults.pool}; portraits: {names})",
    )
    parser.add_argument(
        "--vector-share",
        type=float,
        default=None,
        help=f"with --video: share of the clips drawn with the vector styles instead of a portrait, 0-1 "
        f"(default {defaults.vector_share:g})",
    )
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="with --video: plain clips (the avatar's own framing, colours as drawn, crf 20, never mirrored); "
        "the people are the same as with augmentation",
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
        looks=look_options(args),
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


def look_options(args: argparse.Namespace) -> LookOptions:
    """The look options of the command line; SynthConfigError when one is given without --video."""
    given = [name for name, value in (("--portraits", args.portraits), ("--vector-share", args.vector_share),
                                      ("--no-augment", args.no_augment or None)) if value is not None]  # fmt: skip
    if given and not args.video:
        raise SynthConfigError(f"{', '.join(given)}: only apply to videos; add --video")
    defaults = LookOptions()
    return LookOptions(
        pool=args.portraits or defaults.pool,
        vector_share=defaults.vector_share if args.vector_share is None else args.vector_share,
        augment=not args.no_augment,
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
