"""Render a (T, 58) face clip with an avatar: a vector style or the user's own portrait photo.

python -m renderer --params clip.npy --out out.mp4 [--size 640x360] [--avatar glasses|me.jpg] [--fps 30]
python -m renderer --params clip.npy --out frames/            # a PNG sequence (a folder: no extension)
python -m renderer --params clip.npy --camera                 # play into the virtual camera (1280x720) in real time
python -m renderer --sheet sheet.png --avatar me.jpg          # labelled key expressions
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from renderer.avatar import Avatar, Color, create_avatar, parse_background
from renderer.face import FPS, FaceValueError, face_frames_shape, validate_face
from renderer.sheet import contact_sheet
from renderer.sinks import DEFAULT_SIZE, DEFAULT_SIZES, SinkError, SinkKind, create_sink, parse_size, save_png
from renderer.timing import FrameClock, interpolate_faces
from renderer.vector import STYLES

SHEET_TILE = (256, 256)  # (width, height) of one expression on a contact sheet


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _background(text: str) -> Color | Path | None:
    try:
        return parse_background(text)
    except (ValueError, FileNotFoundError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _out_kind(out: Path) -> SinkKind:
    """--out: a .mp4 file, or a folder for PNGs (one that exists, or a name without an extension)."""
    if out.suffix.lower() == ".mp4":
        return SinkKind.MP4
    if out.is_dir() or not out.suffix:
        return SinkKind.PNG
    raise ValueError(f"--out {out}: write a .mp4 file, or a folder (a name without an extension) for PNG frames")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m renderer",
        description="Render listener faces (a (T, 58) .npy array at 25 fps) with an avatar.",
    )
    parser.add_argument("--params", type=Path, help="a .npy file holding a (T, 58) float face array (25 fps)")
    parser.add_argument(
        "--out", type=Path, help="output: a .mp4 file (H.264), or a folder (no extension) for a PNG sequence "
        "(000000.png, ...)",
    )  # fmt: skip
    parser.add_argument("--camera", action="store_true", help="play the clip into the virtual camera in real time")
    camera = DEFAULT_SIZES[SinkKind.VIRTUAL_CAMERA]
    parser.add_argument(
        "--size", type=_size, default=None, metavar="WxH",
        help=f"frame size, even (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}; --camera {camera[0]}x{camera[1]})",
    )  # fmt: skip
    parser.add_argument(
        "--avatar", "--style", dest="avatar", default="default", metavar="STYLE|PHOTO",
        help=f"who is drawn: a style ({', '.join(STYLES)}) or a portrait photo (.jpg, .png, .webp) animated by "
        "the faces (default: default; --style is the same option)",
    )  # fmt: skip
    parser.add_argument(
        "--background", type=_background, default=None,
        help="background: R,G,B (e.g. 230,236,242), #rrggbb, or an image file (default: the style's colour, or "
        "the photo's own background)",
    )  # fmt: skip
    parser.add_argument("--fps", type=float, default=30.0, help="output frame rate; faces are interpolated (30)")
    parser.add_argument("--input-fps", type=float, default=float(FPS), help="frame rate of --params (default 25)")
    parser.add_argument("--sheet", type=Path, help="also write a labelled contact sheet of key expressions (PNG)")
    return parser


def _load_faces(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FaceValueError(f"{path}: cannot read a .npy array ({err})") from err
    return validate_face(array.reshape(face_frames_shape(array.shape, str(path))), str(path))


def _avatar(args: argparse.Namespace, size: tuple[int, int]) -> Avatar:
    return create_avatar(args.avatar, width=size[0], height=size[1], background=args.background)


def _render(args: argparse.Namespace, out: SinkKind, avatar: Avatar) -> None:
    faces = interpolate_faces(_load_faces(args.params), args.input_fps, args.fps)
    width, height = avatar.width, avatar.height
    if out is SinkKind.VIRTUAL_CAMERA:
        sink = create_sink(SinkKind.VIRTUAL_CAMERA, width=width, height=height, fps=args.fps)
    elif out is SinkKind.MP4:
        sink = create_sink(SinkKind.MP4, path=args.out, width=width, height=height, fps=args.fps)
    else:
        sink = create_sink(SinkKind.PNG, directory=args.out, width=width, height=height, fps=args.fps)
    clock = FrameClock(args.fps) if args.camera else None
    with sink:
        for k, face in enumerate(tqdm(faces, desc="render", unit="frame")):
            if clock is not None:
                clock.wait()
            sink.write(avatar.draw(face), k / args.fps)
    print(f"wrote {len(faces)} frames at {args.fps:g} fps to {'the virtual camera' if args.camera else args.out}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.params is None and args.sheet is None:
        parser.error("give --params (with --out or --camera) and/or --sheet")
    if args.params is not None and args.out is None and not args.camera:
        parser.error("--params needs --out FILE.mp4 / FOLDER, or --camera")
    try:
        out = SinkKind.VIRTUAL_CAMERA if args.camera else _out_kind(args.out) if args.out is not None else None
        if args.sheet is not None:
            with _avatar(args, SHEET_TILE) as avatar:
                save_png(args.sheet, contact_sheet(avatar))
            print(f"wrote contact sheet {args.sheet}")
        if args.params is not None and out is not None:
            with _avatar(args, args.size or DEFAULT_SIZES[out]) as avatar:
                _render(args, out, avatar)
    except (FaceValueError, SinkError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
