"""`reactdiff-trainer clip`: one synthetic speaker as a single media file (avatar video + speech), for the engine.

    reactdiff-trainer clip --out demo/speaker.mp4 --seconds 20 --seed 1
    reactdiff-trainer clip --out demo/real.mp4 --portrait smiling_man       # a real person (or --portrait me.jpg)

The speaker is generated exactly as in the corpus (espeak-ng speech, a face driven by it) and drawn with the
vector avatar, or with the photo avatar from a portrait of trainer.synth.portraits or the user's own photo; the
file holds H.264 video at 25 fps and AAC audio, so `reactdiff-engine --input` can react to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from renderer.avatar import PHOTO_SUFFIXES, Avatar, create_avatar
from renderer.video import write_face_media
from trainer.synth.corpus import SynthConfig, check_config, generate_script
from trainer.synth.espeak import EspeakError, find_espeak
from trainer.synth.portraits import PORTRAITS, portrait_photo
from trainer.synth.speech import SAMPLE_RATE

DEFAULT_STYLE = "bob"  # the vector style of a clip without --portrait


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "clip",
        help="write one synthetic speaker (avatar video + speech) as an mp4 for reactdiff-engine --input",
        description="Generate one synthetic speaker as in `synth` (espeak-ng speech and a face driven by it) and "
        "write it as a single mp4 with H.264 video and AAC audio: a ready input for `reactdiff-engine --input`.",
    )
    p.add_argument("--out", required=True, type=Path, help="output .mp4")
    p.add_argument("--seconds", type=float, default=20.0, help="length in seconds (default 20, at least 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same speaker")
    p.add_argument("--size", default="320x320", help="video size WIDTHxHEIGHT (default 320x320)")
    p.add_argument(
        "--portrait",
        metavar="NAME|PATH",
        help="draw the speaker from a real portrait with the photo avatar: a library portrait "
        f"({', '.join(PORTRAITS)}) or your own {'/'.join(PHOTO_SUFFIXES)} photo of one face "
        f"(default: the vector avatar, style {DEFAULT_STYLE!r})",
    )
    p.set_defaults(handler=run)


def speaker_avatar(portrait: str | None, width: int, height: int) -> Avatar:
    """The avatar of `--portrait` (a library name or a photo file; None: the vector style) at width x height."""
    from trainer.cli import UserError

    if portrait is None:
        return create_avatar(DEFAULT_STYLE, width=width, height=height)
    if portrait in PORTRAITS:
        return create_avatar(portrait_photo(portrait), width=width, height=height)
    if Path(portrait).suffix.lower() not in PHOTO_SUFFIXES:
        raise UserError(
            f"--portrait {portrait}: neither a library portrait ({', '.join(PORTRAITS)}) nor a "
            f"{'/'.join(PHOTO_SUFFIXES)} photo"
        )
    return create_avatar(Path(portrait), width=width, height=height)


def run(args: argparse.Namespace) -> int:
    from trainer.cli import UserError

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 320x320") from None
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise UserError(f"--size {args.size}: width and height must be even and at least 64 (H.264)")
    config = SynthConfig(out=args.out.parent, clips=3, seconds=args.seconds, seed=args.seed, listeners_per_speaker=1)
    check_config(config)
    with speaker_avatar(args.portrait, width, height) as avatar:  # a bad photo fails before any work
        try:
            speaker, _ = generate_script(find_espeak(), config, 0)
        except EspeakError as exc:
            raise UserError(str(exc)) from None
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_face_media(args.out, speaker.face, speaker.audio, audio_rate=SAMPLE_RATE, avatar=avatar)
    who = f"portrait {args.portrait}" if args.portrait else f"vector avatar {DEFAULT_STYLE!r}"
    print(f"wrote {args.out}: {args.seconds:g} s speaker clip ({who}, {width}x{height}, 25 fps, with speech)")
    return 0
