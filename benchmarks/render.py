"""Avatar render speed on one thread, at the default size of each output (camera, room, file).

"draw" is avatar.draw() into its numpy RGB array (what every sink is handed); "draw+yuv420p" adds the conversion
to the planar YUV that the mp4 and WebRTC encoders take (PyAV's swscale, as renderer.sinks and renderer.track do).

.venv/bin/python benchmarks/render.py [--avatar glasses|portrait.jpg]
# prints {"avatar": "default", "fps": {"1280x720": {"draw": ..., "draw+yuv420p": ...}, "640x480": ..., ...}}
"""

from __future__ import annotations

import argparse
import json
import time

import av
import numpy as np

from renderer.avatar import Avatar, create_avatar
from renderer.face import FACE_INDEX, neutral_face
from renderer.sinks import DEFAULT_SIZES, SinkKind

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


def to_yuv420p(rgb: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def frames_per_second(avatar: Avatar, faces: np.ndarray, *, convert: bool) -> float:
    for face in faces[:10]:  # warm up
        avatar.draw(face)
    start = time.perf_counter()
    for face in faces:
        rgb = avatar.draw(face)
        if convert:
            to_yuv420p(rgb)
    return len(faces) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--avatar", default="default", help="a style name or a portrait photo (default: default)")
    args = parser.parse_args()
    faces = moving_faces(FRAMES)
    result = {}
    for width, height in SIZES:
        with create_avatar(args.avatar, width=width, height=height) as avatar:
            result[f"{width}x{height}"] = {
                "draw": round(frames_per_second(avatar, faces, convert=False), 1),
                "draw+yuv420p": round(frames_per_second(avatar, faces, convert=True), 1),
            }
    print(json.dumps({"avatar": args.avatar, "fps": result}))


if __name__ == "__main__":
    main()
