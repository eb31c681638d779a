"""The two timelines of a stream, indexed by 40 ms frame: what the speaker did, and what the listener did.

`SpeakerTimeline`: audio features per frame (with the arrival time of the samples that completed it) and the
speaker face per frame, sample-and-held from the tracker's 25 fps results. It cuts window inputs.
`ListenerTimeline`: the listener frames emitted so far (raw model frames, which condition the next window),
the seam join of each window's new frames, hold/decay fill of frames no window produced in time, and the
One Euro filter over everything emitted, in frame order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from engine.features import AUDIO_FEATURE_DIM
from engine.runtime.queues import FrameBuffer
from engine.smoothing import OneEuroFilter, hold_decay
from engine.tracker import face_slot
from engine.windows import (
    SILENCE_FEATURES,
    WindowPlan,
    cut_window,
    join_new_frames,
    window_conditioning,
    window_present,
)
from renderer.face import FACE_DIM

Array = NDArray[np.float32]
_NEVER = np.array([-np.inf])  # the arrival of a frame before the stream's start
_NO_TAG = np.array([-1], np.int64)


@dataclass(frozen=True)
class TrackedFace:
    """One tracker result: the speaker's face at media time t_s, and when its video frame arrived."""

    t_s: float
    face: Array  # (58,)
    found: bool
    arrival_s: float
    tag: int = -1
    """The video frame's index as its delay-probe barcode gave it (engine.runtime.probe); -1: none."""


@dataclass(frozen=True)
class FrameSources:
    """What each frame of a run depended on: for frame i, the arrival (time.monotonic()) of the newest speaker input
    its listener frame could depend on (`engine.windows.dependency_horizon`) and that speaker frame's video tag."""

    arrival_s: NDArray[np.float64]  # (n,)
    tag: NDArray[np.int64]  # (n,)
    window: int
    """The window that made the frames (for frames filled by hold/decay: the last one that ran)."""

    def part(self, lo: int, hi: int | None = None) -> FrameSources:
        """Frames lo..hi-1 of the run."""
        return FrameSources(self.arrival_s[lo:hi], self.tag[lo:hi], self.window)

    def held(self, count: int) -> FrameSources:
        """`count` frames that hold this run's last frame (hold/decay fill depends on nothing newer)."""
        return FrameSources(np.repeat(self.arrival_s[-1:], count), np.repeat(self.tag[-1:], count), self.window)


@dataclass(frozen=True)
class WindowInputs:
    """Speaker inputs of one window, ready for the backend (batch 1)."""

    k: int
    """Index of the window in `plan_windows` order: its noise is window_noise(seed, k)."""
    end: int
    """Absolute index of its last frame."""
    audio: Array  # (1, W, 57)
    face: Array  # (1, W, 58)
    present: Array  # (1, 2): [audio, face]
    newest_arrival_s: float
    """Arrival time of the newest speaker input the window read."""
    arrivals_s: NDArray[np.float64]
    """(W,) per window frame, the arrival time of the newest input up to it (-inf before the stream's start)."""
    tags: NDArray[np.int64]
    """(W,) per window frame, the probe tag of the video frame whose face it holds (-1: none)."""
    cut_s: float
    """time.monotonic() when the window was cut."""


def shifted(plan: WindowPlan, offset: int) -> WindowPlan:
    """The same window in a buffer whose row 0 is absolute frame `offset`."""
    return WindowPlan(end=plan.end - offset, window=plan.window, hop=plan.hop)


class SpeakerTimeline:
    """Speaker features by frame. Audio frames are appended by the reader; tracked faces by the tracker thread.

    The face of frame t is the newest tracked face whose video frame started before the end of frame t
    ((t+1) * 40 ms, `engine.tracker.face_slot`), fixed once a window reads it, so every window sees the same
    face for the same frame.
    """

    def __init__(self, window: int, *, has_audio: bool, has_video: bool) -> None:
        self.window, self.has_audio, self.has_video = window, has_audio, has_video
        self.audio = FrameBuffer(AUDIO_FEATURE_DIM)
        self.audio_arrival = FrameBuffer(1, np.float64)
        self.face = FrameBuffer(FACE_DIM)
        self.face_found = FrameBuffer(1, np.float64)
        self.face_arrival = FrameBuffer(1, np.float64)
        self.face_tag = FrameBuffer(1, np.int64)
        self._buffers = (self.audio, self.audio_arrival, self.face, self.face_found, self.face_arrival, self.face_tag)
        self._tracked: deque[TrackedFace] = deque()
        self._held = TrackedFace(-1.0, np.zeros(FACE_DIM, np.float32), False, -np.inf)
        self._lock = threading.Lock()

    @property
    def frames(self) -> int:
        return self.audio.end

    def add_audio(self, features: Array, arrivals_s: NDArray[np.float64]) -> None:
        """Append features (n, 57) of the next n frames and the arrival time (n,) of each."""
        self.audio.append(features)
        self.audio_arrival.append(arrivals_s)

    def add_face(self, tracked: TrackedFace) -> None:
        """A tracker result (any thread); results arrive in media-time order."""
        with self._lock:
            self._tracked.append(tracked)

    def _assign_faces(self, through: int) -> None:
        with self._lock:
            for t in range(self.face.end, through + 1):
                while self._tracked and face_slot(self._tracked[0].t_s) <= t:
                    self._held = self._tracked.popleft()
                held = self._held
                self.face.append(held.face)
                self.face_found.append(np.array([float(held.found)]))
                self.face_arrival.append(np.array([held.arrival_s]))
                self.face_tag.append(np.array([held.tag]))

    def window_inputs(self, k: int, plan: WindowPlan) -> WindowInputs:
        """Cut window `k` (frames plan.start..plan.end; frames before 0 are silence and no face)."""
        self._assign_faces(plan.end)
        audio = cut_window(self.audio.data[None], shifted(plan, self.audio.offset), SILENCE_FEATURES)
        face = cut_window(self.face.data[None], shifted(plan, self.face.offset), np.zeros(FACE_DIM, np.float32))
        found = self.face_found.data[None, :, 0] > 0.5
        modalities = np.array([[float(self.has_audio), float(self.has_video)]], np.float32)
        present = window_present(modalities, found, shifted(plan, self.face_found.offset))
        arrivals = cut_window(self.audio_arrival.data[None], shifted(plan, self.audio_arrival.offset), _NEVER)[0, :, 0]
        tags = cut_window(self.face_tag.data[None], shifted(plan, self.face_tag.offset), _NO_TAG)[0, :, 0]
        if present[0, 1]:  # the faces count: a frame's newest input may be its video frame
            faces = cut_window(self.face_arrival.data[None], shifted(plan, self.face_arrival.offset), _NEVER)
            arrivals = np.maximum(arrivals, faces[0, :, 0])
        else:
            tags = np.full_like(tags, -1)
        for buffer in self._buffers:  # later windows start later (the stream's last one no earlier)
            buffer.forget_before(plan.start)
        return WindowInputs(k, plan.end, audio, face, present, float(arrivals.max()), arrivals, tags, time.monotonic())


@dataclass(frozen=True)
class Emitted:
    """A run of listener frames first..first+n-1 as they leave the timeline."""

    first: int
    raw: Array  # (n, 83) the model's frames after the seam join (what conditions later windows)
    smoothed: Array  # (n, 83) after the One Euro filter (what is rendered)
    filled: bool
    """True for hold/decay frames that no window produced in time."""
    sources: FrameSources | None = None
    """What each frame depended on (None: not known, e.g. a window committed without them)."""


class ListenerTimeline:
    """Listener frames emitted so far; thread-safe (the inference worker commits, the player fills).

    Every emitted run goes, in frame order, through the One Euro filter and then to `emit` (the player, and a
    room's reactions channel). `emit` is called outside the timeline's lock, by one thread at a time: a thread
    that finds another one emitting leaves its runs to that thread, so a slow `emit` (encoding for the room)
    never holds up the 30 fps player, and the runs still leave in frame order.
    """

    def __init__(
        self, window: int, neutral: Array, smoother: OneEuroFilter, emit: Callable[[Emitted], object], *,
        hold_tau_frames: float = 25.0, record: bool = False,
    ) -> None:  # fmt: skip
        self.window, self.neutral = window, neutral.astype(np.float32)
        self.raw = FrameBuffer(len(neutral))
        self._smoother, self._emit, self._tau = smoother, emit, hold_tau_frames
        self._fill_run = 0  # frames filled since the last window's frames (the decay continues across fills)
        self._lock = threading.Lock()  # guards the frames, the filter and the outbox; never held during `emit`
        self._outbox: deque[Emitted] = deque()  # runs made, in frame order, not yet given to `emit`
        self._emitting = threading.Lock()  # held by the one thread handing the outbox to `emit`
        self.seams: list[int] = []  # first frame of every window run after the stream's first window
        self.record = record
        self.filled = 0  # frames emitted by hold/decay
        self.recorded: list[Emitted] = []
        self._sources: FrameSources | None = None  # those of the last run appended (a fill holds its last frame)

    def plan(self, end: int) -> WindowPlan | None:
        """The plan of a window ending at `end`: its new frames are those not emitted yet (None if there are none).

        If more than W-1 frames are missing (windows were dropped), the oldest are filled first, so that the
        frame before the new ones lies in the window and the seam can be joined.
        """
        with self._lock:
            first = self.raw.end
            if first > end:
                return None
            if end - first + 1 > self.window - 1:
                self._fill(end - self.window + 1)
                first = self.raw.end
        self._deliver()
        return WindowPlan(end=end, window=self.window, hop=end - first + 1)

    def conditioning(self, plan: WindowPlan) -> tuple[Array, Array]:
        """known (1, W, 83) and known_mask (1, W) for `plan` from the emitted frames."""
        with self._lock:
            return window_conditioning(self.raw.data[None], shifted(plan, self.raw.offset))

    def commit(self, plan: WindowPlan, frames_w: Array, sources: FrameSources | None = None) -> int:
        """Emit the window's output (1, W, 83) for the frames still missing; returns how many it emitted.
        `sources`: what each of the window's W frames depended on (they go with the frames emitted)."""
        with self._lock:
            first = self.raw.end
            if first > plan.end:
                return 0
            still = WindowPlan(end=plan.end, window=plan.window, hop=plan.end - first + 1)
            previous = self.raw[first - 1][None] if first > 0 else None
            new = join_new_frames(frames_w, still, previous)[0]
            if first > 0:
                self.seams.append(first)
            self._fill_run = 0
            kept = None if sources is None else sources.part(first - plan.start)
            self._append(first, new, filled=False, sources=kept)
        self._deliver()
        return len(new)

    def fill_through(self, frame: int) -> int:
        """Fill frames up to `frame` that are still missing by holding the last one and decaying to neutral."""
        with self._lock:
            count = self._fill(frame)
        self._deliver()
        return count

    def _fill(self, frame: int) -> int:
        first = self.raw.end
        count = frame - first + 1
        if count <= 0:
            return 0
        last = self.raw[first - 1] if first > 0 else self.neutral
        frames = hold_decay(last, self.neutral, count, start=self._fill_run + 1, tau_frames=self._tau)
        self._fill_run += count
        self.filled += count
        sources = None if self._sources is None else self._sources.held(count)
        self._append(first, frames, filled=True, sources=sources)
        return count

    def _append(self, first: int, raw: Array, *, filled: bool, sources: FrameSources | None) -> None:
        self.raw.append(raw)
        self.raw.forget_before(self.raw.end - self.window)  # a later window starts at or after next - W + 1
        self._sources = sources
        out = Emitted(first, raw, self._smoother(raw), filled, sources)
        if self.record:
            self.recorded.append(out)
        self._outbox.append(out)

    def _deliver(self) -> None:
        """Hand the outbox to `emit`, oldest run first, unless another thread is doing so: that one looks at the
        outbox again after letting go of `_emitting`, so no run is left behind."""
        while self._emitting.acquire(blocking=False):
            try:
                while (out := self._next_out()) is not None:
                    self._emit(out)
            finally:
                self._emitting.release()
            with self._lock:
                if not self._outbox:
                    return

    def _next_out(self) -> Emitted | None:
        with self._lock:
            return self._outbox.popleft() if self._outbox else None

    def recorded_frames(self) -> tuple[Array, Array, NDArray[np.bool_]]:
        """(raw (T, 83), smoothed (T, 83), filled (T,)) of everything emitted (needs record=True)."""
        if not self.recorded:
            empty = np.zeros((0, len(self.neutral)), np.float32)
            return empty, empty.copy(), np.zeros(0, bool)
        raw = np.concatenate([e.raw for e in self.recorded])
        smoothed = np.concatenate([e.smoothed for e in self.recorded])
        filled = np.concatenate([np.full(len(e.raw), e.filled) for e in self.recorded])
        return raw, smoothed, filled
