"""Avatar render speed on one thread, at the default size of each output (camera, room, file).

"draw" is avatar.draw() into its numpy RGB array (what every sink is handed); "draw+yuv420p" adds the conversion
to the yuv420p frame that the mp4 and WebRTC encoders take, as renderer.sinks and renderer.track make it
(renderer.sinks.to_i420 and yuv420p_frame: OpenCV, then one copy into a PyAV frame).

.venv/bin/python benchmarks/render.py [--avatar glasses|portrait.jpg]
.venv/bin/python benchmarks/render.py --sample astronaut      # the photo avatar on a portrait a package ships
# prints {"avatar": "default", "fps": {"1280x720": {"draw": ..., "draw+yuv420p": ...}, "640x480": ..., ...}}

One thread: OpenCV (the photo avatar's warp and the conversion) is held to one thread, as reactdiff-engine holds
it; skia and numpy draw on one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from renderer.avatar import Avatar, create_avatar
from renderer.face import FACE_INDEX, neutral_face
from renderer.sinks import DEFAULT_SIZES, SinkKind, to_i420, yuv420p_frame

SIZES = tuple(DEFAULT_SIZES[kind] for kind in (SinkKind.VIRTUAL_CAMERA, SinkKind.WEBRTC, SinkKind.MP4))
FRAMES = 300


def moving_faces(frames: int) -> np.ndarray:
    """(frames, 58) faces that talk, blink, smile and turn, so every feature is redrawn every frame."""
    t = np.arange(frames) / 25.0
    faces = neutral_face(frames)
    faces[:, FACE_INDEX["jawOpen"]] = 0.4 * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    faces[:, FACE_INDEX["mouthSmileLeft"]] = faces[:, FACE_INDEX["mouthSmileRight"]] = 0.5 * (1 + np.sin(t)) / 2
    faces[:, FACE_INDEX["eyeBlinkLeft"]] = faces[:, FACE_INDEX["eyeBlinkRight"]] = (t % 3 < 0.15).astype(np.float32)
    faces[:, FACE_INDEX["browInnerUp"]] = 0.3 * (1 + np.sin(1.3 * t)) / 2
    faces[:, FACE_INDEX["yaw"]] = 0.3 * np.sin(0.7 * t)
    faces[:, FACE_INDEX["pitch"]] = 0.15 * np.sin(1.1 * t)
    faces[:, FACE_INDEX["roll"]] = 0.1 * np.sin(0.5 * t)
    return faces


def frames_per_second(avatar: Avatar, faces: np.ndarray, *, convert: bool) -> float:
    for face in faces[:10]:  # warm up
        avatar.draw(face)
    start = time.perf_counter()
    for face in faces:
        rgb = avatar.draw(face)
        if convert:
            yuv420p_frame(to_i420(rgb))
    return len(faces) / (time.perf_counter() - start)


def sample_photo(name: str, folder: Path) -> Path:
    """A real portrait that an installed package ships, as a PNG in `folder`: scikit-image's astronaut (512x512)
    or matplotlib's Grace Hopper (512x600, with glasses)."""
    if name == "astronaut":
        from skimage import data

        rgb = data.astronaut()
    else:
        import matplotlib

        bgr = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--avatar", default="default", help="a style name or a portrait photo (default: default)")
    choice.add_argument("--sample", choices=("astronaut", "grace_hopper"), help="the photo avatar on this portrait")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    faces = moving_faces(FRAMES)
    folder = Path(tempfile.mkdtemp(prefix="reactdiff-bench-"))
    spec = sample_photo(args.sample, folder) if args.sample else args.avatar
    result = {}
    for width, height in SIZES:
        with create_avatar(spec, width=width, height=height, cache_dir=folder) as avatar:
            result[f"{width}x{height}"] = {
                "draw": round(frames_per_second(avatar, faces, convert=False), 1),
                "draw+yuv420p": round(frames_per_second(avatar, faces, convert=True), 1),
            }
    print(json.dumps({"avatar": args.sample or args.avatar, "fps": result}))


if __name__ == "__main__":
    main()
