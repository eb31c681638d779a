"""`reactdiff-trainer clip`: one synthetic speaker as a single media file (avatar video + speech), for the engine.

    reactdiff-trainer clip --out demo/speaker.mp4 --seconds 20 --seed 1

The speaker is generated exactly as in the corpus (espeak-ng speech, a face driven by it) and drawn with the
avatar; the file holds H.264 video at 25 fps and AAC audio, so `reactdiff-engine --input` can react to it.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from renderer.avatar import Avatar
from renderer.face import FPS
from trainer.synth.corpus import SynthConfig, check_config, generate_script
from trainer.synth.espeak import EspeakError, find_espeak
from trainer.synth.speech import SAMPLE_RATE

AUDIO_BLOCK = 1024  # samples per encoded audio frame


def write_media(
    path: Path, faces: NDArray[np.float32], audio: NDArray[np.float32], *, size: tuple[int, int], style: str = "bob"
) -> None:
    """Mux the avatar drawn from `faces` (T, 58) at 25 fps with 16 kHz mono `audio` into one mp4."""
    avatar = Avatar(size[0], size[1], style=style)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "20"})
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        for i in range(0, len(pcm), AUDIO_BLOCK):
            block = av.AudioFrame.from_ndarray(pcm[None, i : i + AUDIO_BLOCK], format="s16", layout="mono")
            block.sample_rate, block.pts, block.time_base = SAMPLE_RATE, i, Fraction(1, SAMPLE_RATE)
            container.mux(sound.encode(block))
        container.mux(sound.encode(None))
        for t, face in enumerate(tqdm(faces, desc=f"drawing {path.name}", leave=False)):
            frame = av.VideoFrame.from_ndarray(avatar.draw(face), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))


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
    p.set_defaults(handler=run)


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
    try:
        speaker, _ = generate_script(find_espeak(), config, 0)
    except EspeakError as exc:
        raise UserError(str(exc)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_media(args.out, speaker.face, speaker.audio, size=(width, height))
    print(f"wrote {args.out}: {args.seconds:g} s speaker clip ({width}x{height}, 25 fps, with speech)")
    return 0
