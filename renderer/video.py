"""Render whole face clips to video files.

write_face_video("listener.mp4", faces, fps=25, size=(256, 256))
write_face_video("speaker.mp4", faces, avatar=photo_avatar, frame_filter=camera, crf=30)  # any avatar, filtered
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from renderer.avatar import Avatar
from renderer.face import validate_face
from renderer.sinks import AudioTrack, Mp4Sink
from renderer.vector import VectorAvatar

FrameFilter = Callable[[NDArray[np.uint8]], NDArray[np.uint8]]
"""Turns one drawn (H, W, 3) uint8 frame into the frame written, of the same shape (e.g. a camera's look)."""


def _avatar_for(avatar: Avatar | None, style: str, size: tuple[int, int]) -> contextlib.AbstractContextManager[Avatar]:
    """The given avatar (left open: its owner closes it), or a vector avatar in `style` at `size`, closed after."""
    if avatar is not None:
        return contextlib.nullcontext(avatar)
    return VectorAvatar(style, width=size[0], height=size[1])


def write_face_video(
    path: str | Path,
    faces: NDArray[np.floating],
    *,
    fps: float = 25.0,
    size: tuple[int, int] = (256, 256),
    style: str = "default",
    side_by_side: NDArray[np.uint8] | None = None,
    progress: bool = False,
    avatar: Avatar | None = None,
    frame_filter: FrameFilter | None = None,
    crf: int = 20,
) -> None:
    """Write (T, 58) faces as an H.264 mp4 at `fps`, one video frame per face frame (no interpolation).

    `size` is (width, height) of the avatar. `side_by_side`, if given, is a (T, height, W2, 3) uint8 array
    (e.g. the speaker's video) drawn to the left of the avatar, making the video W2 + width wide.
    `avatar`, if given, draws the faces instead of the vector avatar in `style` (its own size replaces `size`;
    the caller closes it). `frame_filter` turns every drawn frame into the one written; `crf` is x264's
    constant rate factor (lower: better quality, bigger file).
    """
    faces = validate_face(faces, f"faces for {path}").reshape(-1, 58)
    width, height = (avatar.width, avatar.height) if avatar is not None else size
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
    canvas = np.empty((height, extra_width + width, 3), dtype=np.uint8)
    with (
        _avatar_for(avatar, style, (width, height)) as drawer,
        Mp4Sink(path=path, width=extra_width + width, height=height, fps=fps, crf=crf) as sink,
    ):
        for t, face in enumerate(tqdm(faces, desc=f"render {Path(path).name}", unit="frame", disable=not progress)):
            frame = drawer.draw(face)
            if frame_filter is not None:
                frame = frame_filter(frame)
            if side_by_side is None:
                sink.write(frame, t / fps)
                continue
            canvas[:, :extra_width] = side_by_side[t]
            canvas[:, extra_width:] = frame
            sink.write(canvas, t / fps)


def write_face_media(
    path: str | Path,
    faces: NDArray[np.floating] | None = None,
    audio: NDArray[np.floating] | None = None,
    *,
    audio_rate: int = 16_000,
    size: tuple[int, int] = (256, 256),
    fps: int = 25,
    style: str = "default",
    options: dict[str, str] | None = None,
    avatar: Avatar | None = None,
) -> None:
    """Mux the avatar drawn from `faces` (T, 58) and/or `audio` into one media file (a talking-speaker clip).

    `audio` is float in [-1, 1], (N,) mono or (channels, N). A .wav path gets PCM audio, any other container H.264
    video and AAC audio. `options` are container options, e.g. {"movflags": "faststart"}. `avatar`, if given,
    draws the faces instead of the vector avatar in `style` (its own size replaces `size`; the caller closes it).
    """
    if faces is None and audio is None:
        raise ValueError(f"{path}: give faces, audio or both")
    planes = None if audio is None else np.atleast_2d(np.asarray(audio, dtype=np.float32))
    with av.open(str(path), "w", options=options or {}) as out:  # every stream is added before muxing starts
        video = out.add_stream("libx264", rate=fps) if faces is not None else None
        sound = None
        if planes is not None:
            codec = "pcm_s16le" if Path(path).suffix == ".wav" else "aac"
            sound = AudioTrack(out, rate=audio_rate, channels=len(planes), codec=codec)
        if video is not None and faces is not None:
            size = (avatar.width, avatar.height) if avatar is not None else size
            video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
            with _avatar_for(avatar, style, size) as drawer:
                for t, face in enumerate(validate_face(faces, f"faces for {path}").reshape(-1, 58)):
                    frame = av.VideoFrame.from_ndarray(drawer.draw(face), format="rgb24")
                    frame.pts = t
                    out.mux(video.encode(frame))
            out.mux(video.encode())
        if sound is not None and planes is not None:
            sound.write(planes, 0.0)
            sound.flush()
