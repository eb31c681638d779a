"""Frame timing: resample 25 fps face frames to the output rate, and pace output frames in real time.

faces30 = interpolate_faces(faces25, 25.0, 30.0)          # offline, a whole clip
pacer = FacePacer(); pacer.push(t, face); pacer.face_at(now)  # live, one frame at a time
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from numpy.typing import NDArray

from renderer.face import FACE_DIM, validate_face


def output_frame_count(frames_in: int, fps_in: float, fps_out: float) -> int:
    """Number of output frames covering the same duration as `frames_in` input frames (at least 1 if any)."""
    if frames_in == 0:
        return 0
    return max(1, round(frames_in * fps_out / fps_in))


def interpolate_faces(faces: NDArray[np.floating], fps_in: float, fps_out: float) -> NDArray[np.float32]:
    """Resample (T, 58) faces from `fps_in` to `fps_out` by linear interpolation in time.

    Output frame k shows time k / fps_out; times past the last input frame hold it. Returns (T', 58) float32
    with T' = round(T * fps_out / fps_in). Linear blending keeps blendshapes in [0, 1] and is exact for
    small head rotations, which is all a 40 ms step contains.
    """
    if fps_in <= 0 or fps_out <= 0:
        raise ValueError(f"frame rates must be positive, got fps_in={fps_in}, fps_out={fps_out}")
    faces = validate_face(faces, "faces to interpolate").reshape(-1, FACE_DIM)
    count = output_frame_count(len(faces), fps_in, fps_out)
    if count == 0:
        return np.zeros((0, FACE_DIM), dtype=np.float32)
    position = np.minimum(np.arange(count) * (fps_in / fps_out), len(faces) - 1)  # fractional input index
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(faces) - 1)
    weight = (position - low)[:, None].astype(np.float32)
    return (faces[low] * (1 - weight) + faces[high] * weight).astype(np.float32)


class FacePacer:
    """Holds the latest timestamped face frames and answers "which face should be on screen at time t?".

    Push frames as the engine produces them (timestamps in seconds, increasing); `face_at(t)` interpolates
    between the two frames around `t`, holds the newest frame when `t` is past it (the engine is late) and
    the oldest kept frame when `t` is before it. Keeps at most `capacity` frames.
    """

    def __init__(self, *, capacity: int = 16) -> None:
        if capacity < 2:
            raise ValueError(f"FacePacer capacity must be at least 2 frames, got {capacity}")
        self._times: deque[float] = deque(maxlen=capacity)
        self._faces: deque[NDArray[np.float32]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._times)

    def push(self, timestamp_s: float, face: NDArray[np.floating]) -> None:
        """Add one (58,) face shown at `timestamp_s`; timestamps must increase."""
        frame = validate_face(face, f"face at t={timestamp_s:.3f} s")
        if frame.shape != (FACE_DIM,):
            raise ValueError(f"FacePacer.push takes one face of shape (58,), got {frame.shape}")
        if self._times and timestamp_s <= self._times[-1]:
            raise ValueError(f"face timestamps must increase: got {timestamp_s:.4f} s after {self._times[-1]:.4f} s")
        self._times.append(float(timestamp_s))
        self._faces.append(frame.copy())

    def face_at(self, t: float) -> NDArray[np.float32]:
        """The face to show at time `t` (seconds, same clock as `push`)."""
        if not self._times:
            raise LookupError("FacePacer has no faces yet; push() at least one before asking for face_at()")
        times = self._times
        if t <= times[0]:
            return self._faces[0].copy()
        if t >= times[-1]:
            return self._faces[-1].copy()
        i = int(np.searchsorted(np.fromiter(times, dtype=np.float64, count=len(times)), t, side="right"))
        t0, t1 = times[i - 1], times[i]
        w = np.float32((t - t0) / (t1 - t0))
        return (self._faces[i - 1] * (1 - w) + self._faces[i] * w).astype(np.float32)


class FrameClock:
    """Paces a render loop at `fps`: `wait()` sleeps until the next frame is due and returns its time.

    Frame k is due at start + k / fps on `time.monotonic()`. A loop that falls behind skips the missed
    ticks instead of bursting frames to catch up; `skipped` counts them.
    """

    def __init__(self, fps: float = 30.0) -> None:
        if fps <= 0:
            raise ValueError(f"frame rate must be positive, got {fps}")
        self.fps = fps
        self.skipped = 0
        self._start: float | None = None
        self._next = 0

    def wait(self) -> float:
        """Block until the next frame time; return it in seconds since the first call."""
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._next / self.fps
        late = now - self._start - due
        if late > 1.0 / self.fps:
            behind = int(late * self.fps)
            self.skipped += behind
            self._next += behind
            due = self._next / self.fps
        else:
            time.sleep(max(0.0, due - (now - self._start)))
        self._next += 1
        return due
