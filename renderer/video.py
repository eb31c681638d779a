"""Render whole face clips to video files.

write_face_video("listener.mp4", faces, fps=25, size=(256, 256))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from renderer.avatar import Avatar
from renderer.face import validate_face
from renderer.sinks import Mp4Sink


def write_face_video(
    path: str | Path,
    faces: NDArray[np.floating],
    *,
    fps: float = 25.0,
    size: tuple[int, int] = (256, 256),
    style: str = "default",
    side_by_side: NDArray[np.uint8] | None = None,
    progress: bool = False,
) -> None:
    """Write (T, 58) faces as an H.264 mp4 at `fps`, one video frame per face frame (no interpolation).

    `size` is (width, height) of the avatar. `side_by_side`, if given, is a (T, height, W2, 3) uint8 array
    (e.g. the speaker's video) drawn to the left of the avatar, making the video W2 + width wide.
    """
    faces = validate_face(faces, f"faces for {path}").reshape(-1, 58)
    width, height = size
    extra_width = 0
    if side_by_side is not None:
        if side_by_side.dtype != np.uint8 or side_by_side.ndim != 4 or side_by_side.shape[-1] != 3:
            raise ValueError(f"side_by_side: expected (T, H, W, 3) uint8 frames, got {side_by_side.shape}")
        if side_by_side.shape[:2] != (len(faces), height):
            raise ValueError(
                f"side_by_side: expected {len(faces)} frames of height {height} to match the faces and size, "
                f"got shape {side_by_side.shape}"
            )
        extra_width = side_by_side.shape[2]
    avatar = Avatar(width, height, style=style)
    canvas = np.empty((height, extra_width + width, 3), dtype=np.uint8)
    with Mp4Sink(path=path, width=extra_width + width, height=height, fps=fps) as sink:
        for t, face in enumerate(tqdm(faces, desc=f"render {Path(path).name}", unit="frame", disable=not progress)):
            if side_by_side is None:
                sink.write(avatar.draw(face), t / fps)
                continue
            canvas[:, :extra_width] = side_by_side[t]
            canvas[:, extra_width:] = avatar.draw(face)
            sink.write(canvas, t / fps)
