"""`--params-out FILE`: the generated listener frames as the engine emits them (after the seam join and the One
Euro filter: what the avatar is drawn from), each with its media time, for users who drive their own renderers.

    writer = open_params(Path("listener.jsonl"))     # the format by the suffix: .npz, .jsonl or .csv
    engine = StreamEngine(..., on_emitted=writer.write)
    engine.run()
    writer.close()                                   # .npz: written now; the others: flushed and closed

Frame i shows media time t_s = i / 25 s on the speaker's media clock (the time of the speaker's audio and video
it reacts to); its 58 values are in renderer.face's layout and names (52 ARKit blendshapes, pitch, yaw, roll in
radians, tx, ty, tz in units of 10 cm). Frames no window made in time (live runs) are there too, as drawn.

- `.npz`: `faces` (T, 58) float32 and `t_s` (T,) float64, written at the end (a temporary file renamed into
  place, so a reader never sees half a file), also after Ctrl-C.
- `.jsonl`: one JSON object per frame, `{"t_s": 0.04, "browDownLeft": 0.0123, ..., "tz": -0.01}`;
- `.csv`: the header `t_s,browDownLeft,...,tz`, then one row per frame.
  Both are flushed after every run of frames (each window's new frames: a hop, 120 ms with the shipped model), so
  a reader can follow them live.

Values are written with 9 significant digits, which gives back exactly the float32 the avatar was drawn from.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from enum import StrEnum
from pathlib import Path
from typing import TextIO

import numpy as np
from numpy.typing import NDArray

from engine.runtime.timelines import Emitted
from renderer.face import FACE_DIM, FACE_NAMES, FPS
from renderer.sinks import SinkError


class ParamsFormat(StrEnum):
    """The formats of --params-out, by file suffix."""

    NPZ = ".npz"
    JSONL = ".jsonl"
    CSV = ".csv"


def params_format(path: Path) -> ParamsFormat:
    """The format of `path` by its suffix; ValueError naming the ones there are."""
    try:
        return ParamsFormat(path.suffix.lower())
    except ValueError:
        raise ValueError(f"{path}: write a {', '.join(f.value for f in ParamsFormat)} file") from None


def _number(value: float) -> str:
    return f"{value:.9g}"  # 9 significant digits: the float32 exactly


class ParamsWriter(ABC):
    """Takes every emitted run of listener frames, in frame order, from one thread at a time (the engine's
    `on_emitted`); `close()` finishes the file and is safe twice. Raises SinkError when the file cannot be written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = 0
        self.closed = False

    def write(self, emitted: Emitted) -> None:
        """Keep the run's frames: their media times and the 58 face values of each."""
        faces = np.asarray(emitted.smoothed, np.float32)[:, :FACE_DIM]
        t_s = (emitted.first + np.arange(len(faces))) / FPS
        try:
            self._write(t_s, faces)
        except OSError as exc:
            raise SinkError(f"--params-out {self.path}: cannot write it ({exc.strerror or exc})") from None
        self.frames += len(faces)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._close()
        except OSError as exc:
            raise SinkError(f"--params-out {self.path}: cannot write it ({exc.strerror or exc})") from None

    @abstractmethod
    def _write(self, t_s: NDArray[np.float64], faces: NDArray[np.float32]) -> None:
        """(n,) media times and (n, 58) faces of the next n frames."""

    @abstractmethod
    def _close(self) -> None:
        """Finish the file."""


class NpzParams(ParamsWriter):
    """Every frame kept in memory (232 bytes each: 21 MB for an hour), written once at the end."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._faces: list[NDArray[np.float32]] = []
        self._times: list[NDArray[np.float64]] = []

    def _write(self, t_s: NDArray[np.float64], faces: NDArray[np.float32]) -> None:
        self._faces.append(faces.copy())
        self._times.append(t_s)

    def _close(self) -> None:
        faces = np.concatenate(self._faces) if self._faces else np.zeros((0, FACE_DIM), np.float32)
        t_s = np.concatenate(self._times) if self._times else np.zeros(0)
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            with partial.open("wb") as file:  # a file object: np.savez would add ".npz" to a name
                np.savez(file, faces=faces, t_s=t_s)
            os.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)


class LineParams(ParamsWriter):
    """One line per frame, flushed after every run: the streaming formats."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._file: TextIO = path.open("w", encoding="utf-8", newline="\n")
            self._file.write(self.header())
        except OSError as exc:
            raise SinkError(f"--params-out {path}: cannot write it ({exc.strerror or exc})") from None

    def header(self) -> str:
        """What comes before the first frame."""
        return ""

    @abstractmethod
    def line(self, t_s: float, face: NDArray[np.float32]) -> str:
        """One frame's line, without its newline."""

    def _write(self, t_s: NDArray[np.float64], faces: NDArray[np.float32]) -> None:
        self._file.write("".join(self.line(float(t), face) + "\n" for t, face in zip(t_s, faces, strict=True)))
        self._file.flush()

    def _close(self) -> None:
        self._file.close()


_JSON_KEYS = tuple(json.dumps(name) for name in ("t_s", *FACE_NAMES))


class JsonlParams(LineParams):
    def line(self, t_s: float, face: NDArray[np.float32]) -> str:
        values = [_number(t_s), *map(_number, face.tolist())]
        return "{" + ", ".join(f"{key}: {value}" for key, value in zip(_JSON_KEYS, values, strict=True)) + "}"


class CsvParams(LineParams):
    def header(self) -> str:
        return ",".join(("t_s", *FACE_NAMES)) + "\n"

    def line(self, t_s: float, face: NDArray[np.float32]) -> str:
        return ",".join([_number(t_s), *map(_number, face.tolist())])


WRITERS: dict[ParamsFormat, type[ParamsWriter]] = {
    ParamsFormat.NPZ: NpzParams, ParamsFormat.JSONL: JsonlParams, ParamsFormat.CSV: CsvParams,
}  # fmt: skip


def open_params(path: Path) -> ParamsWriter:
    """A writer for `path` in the format of its suffix (ValueError for another); SinkError if it cannot be made."""
    return WRITERS[params_format(path)](path)
