"""Readers for the files of one REACT clip: audio, 3DMM face, emotion CSV, mean face, video (mp4 or PNG folder).

Each reader checks what it reads and raises `DatasetError` naming the file and the problem. They are pure
functions of a path, so the engine's file mode can reuse them.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Literal

import av
import numpy as np
from numpy.typing import NDArray

from engine.sources.audio import MonoResampler
from engine.sources.file import audio_problem, decodable, open_media, video_size_problem
from renderer.face import (
    EMOTION_DIM,
    FACE_DIM,
    FPS,
    FaceValueError,
    face_frames_shape,
    squeezed_shape,
    validate_emotion,
    validate_face,
)

AUDIO_RATE = 16000  # Hz: what the model's audio features expect
SAMPLES_PER_FRAME = AUDIO_RATE // FPS  # 640 samples per 40 ms frame
VIDEO_FPS_TOLERANCE = 0.5  # frames per second an mp4's rate may differ from FPS
_PNG_NAME = re.compile(r"^(\d+)\.png$", re.IGNORECASE)


class DatasetError(ValueError):
    """A data file is missing, malformed or does not line up with the others; the message names the file."""


# --- audio ----------------------------------------------------------------------------------------------


def load_audio(path: str | Path, rate: int = AUDIO_RATE) -> NDArray[np.float32]:
    """Decode any audio file PyAV reads to (samples,) mono float32 in [-1, 1] at `rate` Hz.

    Channels are averaged (a tone present in both channels keeps its amplitude); resampling uses
    `av.AudioResampler` (libswresample).
    """
    path = Path(path)
    try:
        with open_media(path) as container:
            streams = decodable(container.streams.audio)
            if not streams:
                raise DatasetError(f"{path}: no audio stream that this can decode in this file")
            chunks = _decode_mono(container, streams[0], rate)
    except (av.FFmpegError, OSError) as exc:
        raise DatasetError(f"{path}: cannot decode audio ({exc})") from exc
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise DatasetError(f"{path}: the audio stream holds no samples")
    bad = ~np.isfinite(audio)
    if bad.any():
        first = int(np.argmax(bad))
        raise DatasetError(
            f"{path}: sample {first} ({first / rate:.3f} s) is not finite ({int(bad.sum())} such samples)"
        )
    return np.clip(audio, -1.0, 1.0)


def _decode_mono(
    container: av.container.InputContainer, stream: av.AudioStream, rate: int
) -> list[NDArray[np.float32]]:
    # The engine's resampler: training and serving hear the same samples (channels averaged, see MonoResampler).
    resampler = MonoResampler(rate, what=str(container.name))
    chunks = []
    for frame in container.decode(stream):
        if problem := audio_problem(frame.sample_rate, frame.layout.nb_channels):  # 1 Hz: 400 MB from 12 KB
            raise DatasetError(f"{container.name}: {problem}")
        chunks.append(resampler.push(frame))
    chunks.append(resampler.flush())  # the resampler's delay line
    return chunks


def fit_audio(audio: NDArray[np.float32], frames: int) -> NDArray[np.float32]:
    """Pad with silence or trim `audio` to exactly `frames` * SAMPLES_PER_FRAME samples."""
    wanted = frames * SAMPLES_PER_FRAME
    if audio.size >= wanted:
        return audio[:wanted]
    return np.concatenate([audio, np.zeros(wanted - audio.size, dtype=np.float32)])


# --- face and emotion -----------------------------------------------------------------------------------


def _load_npy(path: Path, mmap_mode: Literal["r"] | None = None) -> NDArray:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read as a .npy array ({exc})") from exc


def load_mean_face(path: str | Path) -> NDArray[np.float32]:
    """Read a mean face: 58 floats stored with any singleton axes ((58,), (1, 58), (1, 1, 58), ...)."""
    path = Path(path)
    arr = _load_npy(path)
    if squeezed_shape(arr.shape) != (FACE_DIM,):
        raise DatasetError(f"{path}: a mean face holds {FACE_DIM} values, got an array of shape {arr.shape}")
    return _validated_face(arr.reshape(FACE_DIM), path)


def load_face(path: str | Path, mean_face: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
    """Read a 3DMM `.npy` that squeezes to (T, 58) as (T, 58) float32, minus `mean_face` (58,) when given.

    REACT stores FaceVerse coefficients raw, as (T, 1, 58) in the official release; the model works on
    coefficients with the mean face subtracted.
    """
    path = Path(path)
    arr = _load_npy(path)
    face = _validated_face(arr.reshape(face_shape(arr.shape, path)), path)
    return face if mean_face is None else (face - mean_face).astype(np.float32)


def face_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int]:
    """(T, 58) for a 3DMM array of `shape`, by the face representation's one rule (renderer.face.face_frames_shape);
    a DatasetError naming `path` otherwise."""
    try:
        return face_frames_shape(shape, str(path))
    except FaceValueError as exc:
        raise DatasetError(str(exc)) from exc


def _validated_face(arr: NDArray, path: Path) -> NDArray[np.float32]:
    try:
        return validate_face(arr, str(path)).astype(np.float32, copy=False)
    except FaceValueError as exc:
        raise DatasetError(str(exc)) from exc


def load_emotion(path: str | Path) -> NDArray[np.float32]:
    """Read a REACT emotion CSV (a header line, then one row of 25 values per frame) as (T, 25) float32.

    Columns are taken by position in `renderer.face.EMOTION_NAMES` order (official files spell the header
    differently). A leading unnamed index column, as pandas writes it, is dropped. Blank lines (spaces
    included) are skipped, as `emotion_frames` skips them when counting.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = [row for row in csv.reader(file) if len(row) > 1 or (row and row[0].strip())]  # blank lines
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read as a CSV file ({exc})") from exc
    if len(rows) < 2:
        raise DatasetError(f"{path}: expected a header line and at least one frame, got {len(rows)} line(s)")
    header = rows[0]
    skip = 1 if len(header) == EMOTION_DIM + 1 and not header[0].strip() else 0  # pandas index column
    if len(header) - skip != EMOTION_DIM:
        raise DatasetError(
            f"{path}: expected {EMOTION_DIM} columns, got {len(header)} "
            "(REACT emotion files have 15 AUs, valence, arousal and 8 expressions)"
        )
    values = [_emotion_row(path, line, row, len(header), skip) for line, row in enumerate(rows[1:], start=2)]
    try:
        return validate_emotion(np.array(values, dtype=np.float32), str(path))
    except FaceValueError as exc:
        raise DatasetError(str(exc)) from exc


def _emotion_row(path: Path, line: int, row: list[str], columns: int, skip: int) -> list[float]:
    if len(row) != columns:
        raise DatasetError(f"{path}: line {line} has {len(row)} columns, the header has {columns}")
    try:
        return [float(value) for value in row[skip:]]
    except ValueError as exc:
        raise DatasetError(f"{path}: line {line} holds a value that is not a number ({exc})") from exc


# --- frame counts without loading -----------------------------------------------------------------------


def face_frames(path: str | Path) -> int:
    """Number of frames in a 3DMM `.npy`, read from its header only."""
    path = Path(path)
    return face_shape(_load_npy(path, mmap_mode="r").shape, path)[0]


def emotion_frames(path: str | Path) -> int:
    """Number of frames in an emotion CSV: its non-empty lines minus the header."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            lines = sum(1 for line in file if line.strip())
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    return max(lines - 1, 0)


# --- video ----------------------------------------------------------------------------------------------


def png_frame_paths(folder: str | Path) -> list[Path]:
    """The `1.png … N.png` files of a frame folder in numeric order; a gap in the numbering is an error."""
    folder = Path(folder)
    numbered: dict[int, Path] = {}
    for entry in folder.iterdir():
        if entry.suffix.lower() != ".png":
            continue
        match = _PNG_NAME.match(entry.name)
        if match is None:
            raise DatasetError(f"{entry}: frame files must be named by number (1.png, 2.png, ...)")
        numbered[int(match.group(1))] = entry
    if not numbered:
        raise DatasetError(f"{folder}: no numbered PNG frames (1.png, 2.png, ...) in this folder")
    first = min(numbered)
    missing = sorted(set(range(first, max(numbered) + 1)) - set(numbered))
    if first not in (0, 1) or missing:
        gap = missing[0] if missing else 1
        raise DatasetError(
            f"{folder}: frame {gap}.png is missing ({len(numbered)} frames, numbered {first}..{max(numbered)})"
        )
    return [numbered[k] for k in sorted(numbered)]


def load_video(path: str | Path) -> NDArray[np.uint8]:
    """Decode a video (an mp4 or anything PyAV reads, or a folder of numbered PNGs) to (N, H, W, 3) RGB uint8."""
    path = Path(path)
    frames = [_decode_image(png) for png in png_frame_paths(path)] if path.is_dir() else _decode_video_file(path)
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise DatasetError(f"{path}: frames differ in size ({sorted(shapes)})")
    return np.stack(frames)


def _rgb(frame: av.VideoFrame) -> NDArray[np.uint8]:
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)  # (H, W, 3)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    streams = decodable(container.streams.video)
    if not streams:
        raise DatasetError(f"{path}: no video stream that this can decode in this file")
    return streams[0]


def _decode_image(path: Path) -> NDArray[np.uint8]:
    try:
        with open_media(path) as container:
            return _rgb(next(container.decode(_video_stream(container, path))))
    except (av.FFmpegError, OSError, StopIteration) as exc:
        raise DatasetError(f"{path}: cannot decode as an image ({exc!r})") from exc


def _decode_video_file(path: Path) -> list[NDArray[np.uint8]]:
    try:
        with open_media(path) as container:
            stream = _video_stream(container, path)
            if problem := video_size_problem(stream.codec_context.width, stream.codec_context.height):
                raise DatasetError(f"{path}: {problem}")
            rate = stream.average_rate
            if rate is not None and abs(float(rate) - FPS) > VIDEO_FPS_TOLERANCE:
                raise DatasetError(
                    f"{path}: expected {FPS} fps video, got {float(rate):.2f} fps (re-encode at {FPS} fps)"
                )
            stream.thread_type = "AUTO"
            frames = [_rgb(frame) for frame in container.decode(stream)]
    except (av.FFmpegError, OSError) as exc:
        raise DatasetError(f"{path}: cannot decode video ({exc})") from exc
    if not frames:
        raise DatasetError(f"{path}: the video stream holds no frames")
    return frames
