"""Avatar render speed on one thread: draw + pixels into a numpy RGB array (what every sink pays).

.venv/bin/python benchmarks/render.py        # prints {"fps": {"1280x720": ..., "640x360": ...}}
"""

from __future__ import annotations

import json
import time

import numpy as np

from renderer.face import FACE_INDEX, neutral_face
from renderer.vector import VectorAvatar

SIZES = ((1280, 720), (640, 360))
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


def frames_per_second(width: int, height: int, faces: np.ndarray) -> float:
    avatar = VectorAvatar(width=width, height=height)
    for face in faces[:10]:  # warm up
        avatar.draw(face)
    start = time.perf_counter()
    for face in faces:
        avatar.draw(face)
    return len(faces) / (time.perf_counter() - start)


def main() -> None:
    faces = moving_faces(FRAMES)
    result = {f"{w}x{h}": round(frames_per_second(w, h, faces), 1) for w, h in SIZES}
    print(json.dumps({"fps": result}))


if __name__ == "__main__":
    main()
