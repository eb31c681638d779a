"""When a stream's work happens: the timing policy of a run, one small interface and a registry keyed by `TimingKind`.

    timing = create_timing(TimingKind.REALTIME, delay=PlayoutDelay.fixed(0.2))   # StreamConfig says which
    timing.start(time.monotonic())                               # the run begins
    timing.observe(chunk.arrival_s, chunk.t_end_s)               # every input (the first one fixes the origin)
    arrivals = timing.arrivals(media_end_s, chunk.arrival_s)     # (n,) arrival times of n inputs
    if timing.faces_ready(needed_s, video_reached_s, video_q.wait_idle): ...   # cut the window now?
    if not timing.skip(plan, time.monotonic()): ...              # run it, then
    ready = timing.ran(plan, job.newest_arrival_s, started, finished)   # latency = ready - newest arrival
    timing.after_window(frames_q); ...; timing.windows_done(frames_q)
    timing.player(parts).run()                                   # the player thread

Everything the engine's threads do differently in a fast and a live run is decided here, so the stage code in
`engine.runtime.engine` never looks at the mode and a change to the live path (`RealtimeTiming`) cannot reach
the file path (`FastTiming`). The policies:

- FAST (files, `--fast`): lossless. Every queue waits (no work is dropped), a window waits for the tracked faces
  of its frames, the worker waits for the player (fewer than `FAST_FRAMES_AHEAD` runs queued), and output tick
  k shows media time k/30 (`FilePlayout`): the frames are those of `engine.windows.generate_windows`, whatever
  the machine's speed. Arrival and ready times are synthetic (see `engine.stats`).
- REALTIME (live devices, rooms, `--realtime`): a full queue drops its oldest item, a window never waits for
  video (the newest tracked face is held), a window whose frames cannot be ready by the time they are shown is
  skipped, arrival and ready times are measured, and a 30 fps clock plays out (`LivePlayout`) behind a playout
  delay that follows how the windows really arrive (`AdaptiveDelay`), or a fixed one.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from engine.runtime.playout import FilePlayout, LivePlayout, Renderer
from engine.runtime.probe import DelayProbe
from engine.runtime.queues import StageQueue
from engine.runtime.timelines import Emitted, ListenerTimeline
from engine.stats import StreamStats
from engine.windows import WindowPlan
from renderer.face import FRAME_SECONDS

FAST_FRAMES_AHEAD = 4  # fast mode: emitted runs the player may have queued before the worker waits for it


class TimingKind(Enum):
    """How a stream is timed; the value is the stats file's "mode"."""

    FAST = "fast"  # lossless, as fast as possible (files)
    REALTIME = "realtime"  # live policies: late work is dropped (devices, rooms, --realtime files)


@dataclass(frozen=True)
class PlayerParts:
    """What a player (the thread that renders listener frames) is given by the engine."""

    frames: StageQueue[Emitted]
    """Emitted listener runs, in frame order."""
    renderer: Renderer
    listener: ListenerTimeline
    """The timeline, to fill frames no window delivered in time."""
    stop: threading.Event
    fps: float
    """Output frame rate."""
    speaker_frames: Callable[[], int]
    """Speaker feature frames read so far (the stream's length once the source has ended)."""
    finished: threading.Event
    """Set once the inference worker has run its last window."""
    live_sink: bool
    """The sink is a live device: stamped on the wall clock, shows the neutral face before the stream starts."""
    stats: StreamStats
    probe: DelayProbe | None = None
    """The delay probe's log (live playout marks each avatar frame and logs it), or None."""


class Playout(Protocol):
    """A player loop: `run()` renders until the stream has been shown (or `stop` is set)."""

    def run(self) -> None: ...


@dataclass(frozen=True)
class PlayoutDelay:
    """The live playout delay (seconds from a speaker input's media time, on the clock of its arrival, to the
    listener frame of that media time on screen): adaptive between `floor_s` and `ceiling_s`, or fixed."""

    start_s: float
    """The delay before any window has run."""
    floor_s: float
    ceiling_s: float
    fill_fraction: float = 0.01
    """The share of recent listener frames the delay may leave unmade in time (filled by hold/decay)."""
    margin_s: float = 0.005
    """Added to what those frames needed (a window a little later than any before)."""
    history_frames: int = 500
    """Listener frames it remembers (20 s at 25 fps)."""
    rise_per_s: float = 0.25
    """How fast it may grow (s per s: the avatar plays at 0.75x speed meanwhile)."""
    fall_per_s: float = 0.05
    """How fast it may shrink (the avatar plays at 1.05x speed meanwhile)."""

    def __post_init__(self) -> None:
        if not 0 < self.floor_s <= self.start_s <= self.ceiling_s:
            raise ValueError(
                f"playout delay: need 0 < floor ({self.floor_s} s) <= start ({self.start_s} s) <= ceiling "
                f"({self.ceiling_s} s)"
            )

    @classmethod
    def fixed(cls, delay_s: float) -> PlayoutDelay:
        return cls(delay_s, delay_s, delay_s)


class AdaptiveDelay:
    """The playout delay in use: the smallest that would have had all but `fill_fraction` of the last
    `history_frames` listener frames ready when the player needed them, plus the margin, within the floor and the
    ceiling, approached at the policy's rates (so media time on screen never runs backwards). Thread-safe: the
    worker reports what windows needed, the player reads the delay every tick."""

    def __init__(self, policy: PlayoutDelay) -> None:
        self.policy = policy
        self._needed: deque[float] = deque(maxlen=policy.history_frames)
        self._delay_s, self._at_s = policy.start_s, -np.inf
        self._lock = threading.Lock()

    def need(self, first_needed_s: float, frames: int) -> None:
        """`frames` consecutive listener frames, of which the first needed a delay of `first_needed_s` to be
        ready in time (each later one a frame less)."""
        with self._lock:
            self._needed.extend(first_needed_s - np.arange(frames) * FRAME_SECONDS)

    def target(self) -> float:
        """The delay it moves towards."""
        p = self.policy
        with self._lock:
            if not self._needed:
                return p.start_s
            needed = float(np.quantile(np.fromiter(self._needed, float), 1 - p.fill_fraction))
        return min(max(needed + p.margin_s, p.floor_s), p.ceiling_s)

    def at(self, now_s: float) -> float:
        """The delay to use at wall time `now_s` (times given to it must not decrease)."""
        target = self.target()
        with self._lock:
            step = max(0.0, now_s - self._at_s) if np.isfinite(self._at_s) else 0.0
            rate = self.policy.rise_per_s if target > self._delay_s else self.policy.fall_per_s
            change = min(abs(target - self._delay_s), rate * step)
            self._delay_s += change if target > self._delay_s else -change
            self._at_s = max(self._at_s, now_s)
            return self._delay_s


class Timing(ABC):
    """The timing policy of one run. Not thread-safe by itself: each method is called by one thread
    (start: run(); observe, arrivals, faces_ready: the reader; skip, ran, after_window, windows_done: the
    inference worker; player: the player), and `origin` is written once, before anything reads it."""

    kind: ClassVar[TimingKind]
    lossless: ClassVar[bool]
    """Policy of the video and window queues: True, a full queue makes its producer wait; False, it drops its
    oldest item (counted)."""
    video_queue_size: ClassVar[int]
    """Video frames that may wait for the tracker."""

    def __init__(self, *, delay: PlayoutDelay) -> None:
        self.delay = AdaptiveDelay(delay)  # from a speaker input to its listener frame on screen (live playout)
        self.origin: float | None = None  # wall time (time.monotonic()) of media time 0; None until known

    def observe(self, arrival_s: float, media_s: float) -> None:
        """An input of media time `media_s` came out of the source at wall time `arrival_s`: the first one
        fixes the origin, unless the run's start did."""
        if self.origin is None:
            self.origin = arrival_s - media_s

    @abstractmethod
    def start(self, now_s: float) -> None:
        """The run starts at wall time `now_s`."""

    @abstractmethod
    def arrivals(self, media_s: NDArray[np.floating[Any]], measured_s: float) -> NDArray[np.float64]:
        """Arrival times (n,) of n inputs completed at media times `media_s` (n,), which the source handed out
        at wall time `measured_s` (after `observe`)."""

    @abstractmethod
    def faces_ready(self, needed_s: float, video_reached_s: float, wait_idle: Callable[[], None]) -> bool:
        """May a window be cut now that needs video up to media time `needed_s`, when the newest video frame
        read is at `video_reached_s`? `wait_idle` blocks until the tracker has finished every frame given."""

    @abstractmethod
    def skip(self, plan: WindowPlan, now_s: float) -> bool:
        """Should the worker drop, at wall time `now_s`, the window of `plan` (its new frames)?"""

    @abstractmethod
    def ran(self, plan: WindowPlan, newest_arrival_s: float, started_s: float, finished_s: float) -> float:
        """The window of `plan`, whose newest input arrived at `newest_arrival_s`, ran from `started_s` to
        `finished_s` (wall, seconds): when its frames count as ready (their latency is ready - newest arrival)."""

    @abstractmethod
    def after_window(self, frames: StageQueue[Emitted]) -> None:
        """After every window the worker ran: backpressure from the player (`frames` holds the runs not taken)."""

    @abstractmethod
    def windows_done(self, frames: StageQueue[Emitted]) -> None:
        """The worker has run its last window (or is stopping)."""

    @abstractmethod
    def player(self, parts: PlayerParts) -> Playout:
        """The loop that renders this run's listener frames to the sink."""


TIMINGS: dict[TimingKind, type[Timing]] = {}

T = TypeVar("T", bound=type[Timing])


def register_timing(cls: T) -> T:
    """Class decorator: make `cls` the implementation of `cls.kind`."""
    TIMINGS[cls.kind] = cls
    return cls


def create_timing(kind: TimingKind, *, delay: PlayoutDelay) -> Timing:
    """The policy registered for `kind`; `delay` is the live playout delay's policy (StreamConfig.playout)."""
    return TIMINGS[kind](delay=delay)


@register_timing
class FastTiming(Timing):
    """Lossless, as fast as possible; latency as a real-time run on this hardware would have it (engine.stats)."""

    kind = TimingKind.FAST
    lossless = True
    video_queue_size = 2  # one frame ready while the tracker works on the other

    def __init__(self, *, delay: PlayoutDelay) -> None:
        super().__init__(delay=delay)
        self._free_s = -np.inf  # when the simulated single worker is free again

    def start(self, now_s: float) -> None:
        self.origin = now_s  # the file "plays" from the run's start

    def arrivals(self, media_s: NDArray[np.floating[Any]], measured_s: float) -> NDArray[np.float64]:
        assert self.origin is not None
        return (self.origin + media_s).astype(np.float64)  # synthetic: media time on the run's clock

    def faces_ready(self, needed_s: float, video_reached_s: float, wait_idle: Callable[[], None]) -> bool:
        if video_reached_s < needed_s:
            return False  # a video frame inside this window may still come
        wait_idle()
        return True

    def skip(self, plan: WindowPlan, now_s: float) -> bool:
        return False

    def ran(self, plan: WindowPlan, newest_arrival_s: float, started_s: float, finished_s: float) -> float:
        # a simulated worker starts when its input arrived and the previous window is done, and takes as long
        ready = max(newest_arrival_s, self._free_s) + (finished_s - started_s)
        self._free_s = ready
        return ready

    def after_window(self, frames: StageQueue[Emitted]) -> None:
        frames.wait_below(FAST_FRAMES_AHEAD)  # do not run far ahead of the renderer

    def windows_done(self, frames: StageQueue[Emitted]) -> None:
        frames.close()  # FilePlayout renders the tail once the queue is closed and drained

    def player(self, parts: PlayerParts) -> Playout:
        return FilePlayout(parts.frames, parts.renderer, parts.stop, fps=parts.fps)


@register_timing
class RealtimeTiming(Timing):
    """Live: stale work is dropped, late windows skipped, times measured, a 30 fps playout behind the delay."""

    kind = TimingKind.REALTIME
    lossless = False
    video_queue_size = 1  # the newest frame wins

    def __init__(self, *, delay: PlayoutDelay) -> None:
        super().__init__(delay=delay)
        self._expected_s = 0.0  # running estimate of one window's inference time

    def start(self, now_s: float) -> None:
        """Media time 0 is placed by the first input that arrives (`observe`), not by the start."""

    def arrivals(self, media_s: NDArray[np.floating[Any]], measured_s: float) -> NDArray[np.float64]:
        return np.full(np.shape(media_s), measured_s, np.float64)

    def faces_ready(self, needed_s: float, video_reached_s: float, wait_idle: Callable[[], None]) -> bool:
        return True  # never wait for video: the newest tracked face is held

    def deadline(self, frame: int, now_s: float) -> float:
        """Wall time at which the player needs listener frame `frame` (the right end of its interpolation), at
        the delay in use at `now_s`."""
        assert self.origin is not None
        return self.origin + self.delay.at(now_s) + (frame - 1) * FRAME_SECONDS

    def needed_delay(self, plan: WindowPlan, ready_s: float) -> float:
        """The delay at which the window's first new frame, ready at `ready_s`, would have been in time."""
        assert self.origin is not None
        return ready_s - self.origin - (plan.first_new - 1) * FRAME_SECONDS

    def skip(self, plan: WindowPlan, now_s: float) -> bool:
        late = now_s + self._expected_s > self.deadline(plan.end, now_s)
        if late:  # what it would have needed: the delay grows for the windows behind it
            self.delay.need(self.needed_delay(plan, now_s + self._expected_s), plan.hop)
        return late

    def ran(self, plan: WindowPlan, newest_arrival_s: float, started_s: float, finished_s: float) -> float:
        spent = finished_s - started_s  # a running mean: a window's time varies with the machine's load
        self._expected_s = spent if self._expected_s == 0 else 0.8 * self._expected_s + 0.2 * spent
        self.delay.need(self.needed_delay(plan, finished_s), plan.hop)
        return finished_s

    def after_window(self, frames: StageQueue[Emitted]) -> None:
        """Never waits for the player: windows that fall behind are skipped instead (`skip`)."""

    def windows_done(self, frames: StageQueue[Emitted]) -> None:
        """The queue stays open: the player still fills frames into it until the stream's end is shown."""

    def player(self, parts: PlayerParts) -> Playout:
        return LivePlayout(
            parts.frames, parts.renderer, parts.listener, parts.stop, fps=parts.fps, delay=self.delay.at,
            origin=lambda: self.origin, speaker_frames=parts.speaker_frames, finished=parts.finished,
            live_sink=parts.live_sink, stats=parts.stats, probe=parts.probe,
        )  # fmt: skip
