"""Admission control: a session that would make windows miss their deadline is refused, and the limit is said.

    costs = measure_costs(service, size=(640, 480), video=True)     # at the server's start, on this machine
    capacity = Capacity(costs, CapacityConfig(), hop=8, scheduler=SchedulerConfig())
    capacity.admit(audio=3, video=1, new_video=True)                # AdmissionError (with the limits) or None
    capacity.limits()                                               # {"audio": 9, "video": 4}: each kind alone

The model of the load is measured, not guessed: the seconds a batch of b windows takes (each bucket size, timed on
the service itself), a tracked video frame (the tracker on a drawn face, plus decoding it from VP8), and an avatar
frame (drawing, the yuv420p conversion and the VP8 encoding a room's subscriber costs). With N sessions, windows
come at N * 25 / hop per second; a batch gathers the oldest window and those that come within `gather_s` (their
phases in the hop are random), so batches hold about 1 + (N - 1) * gather_s / hop_s windows. Two limits hold:

- the scheduler's thread: batches run one after another, so their share of its time stays under
  `scheduler_utilization` (past it, windows queue behind each other and miss their deadlines);
- the cores: inference (times its threads), tracking (25 fps per video session) and rendering (30 fps per session)
  stay under `utilization` of the cores.

The model leaves out what a session costs besides (decoding its audio, the threads' Python, the event loops) and
other work on a shared machine, so the server also looks at the machine now (`LoadMeter`, every second): a session
is refused while running sessions have missed a window in the last 10 s, or when the cores busy machine-wide plus
what one more session costs (the model's figure, or what each running session costs now, the larger) would pass
`utilization` of the cores.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from engine.backends import window_shapes
from engine.serving.scheduler import SchedulerConfig
from engine.serving.service import InferenceService, ServiceKind
from renderer.face import FPS

log = logging.getLogger(__name__)

OUTPUT_FPS = 30.0  # the avatar's frame rate in a room
CALIBRATION_SIZES = (1, 2, 4, 8, 16)


class AdmissionError(RuntimeError):
    """A new session would overload the server; the message says the limit and what to do."""

    def __init__(self, message: str, limits: dict[str, int]) -> None:
        super().__init__(message)
        self.limits = limits


@dataclass(frozen=True)
class Costs:
    """Measured seconds of work, on this machine."""

    batch_s: dict[int, float]
    """Batch size -> seconds of one batched call of the inference service."""
    threads: int
    """Cores one batched call keeps busy (the backend's intra-op threads; 0 where it runs elsewhere: Ray)."""
    video_frame_s: float
    """One speaker video frame: decoding it and tracking the face (25 fps per video session)."""
    avatar_frame_s: float
    """One avatar frame: drawing, converting and encoding it (30 fps per session)."""

    def batch(self, rows: float) -> float:
        """Seconds of a batch of `rows` windows (linear between the measured sizes, beyond them too)."""
        sizes = sorted(self.batch_s)
        times = [self.batch_s[s] for s in sizes]
        if rows <= sizes[-1] or len(sizes) == 1:
            return float(np.interp(rows, sizes, times))
        slope = (times[-1] - times[-2]) / (sizes[-1] - sizes[-2])
        return times[-1] + slope * (rows - sizes[-1])


@dataclass(frozen=True)
class CapacityConfig:
    """How full the server may get."""

    cores: float = float(os.cpu_count() or 1)
    """CPU cores the sessions may use."""
    utilization: float = 0.8
    """Share of the cores the predicted load may fill (the rest: the event loops, the OS, bursts)."""
    scheduler_utilization: float = 0.7
    """Share of the scheduler thread's time its batches may fill."""
    max_sessions: int = 100
    """A hard cap, whatever the model says."""
    video: bool = True
    """Video sessions (face tracking) allowed; False: audio-only sessions only (reactdiff-serve --no-video)."""


@dataclass(frozen=True)
class Load:
    """Predicted load of a set of sessions."""

    scheduler: float
    """Share of the scheduler thread's time spent in batches."""
    cores: float
    """Cores busy."""


class Capacity:
    """The load model and the admission decision."""

    def __init__(self, costs: Costs, config: CapacityConfig, *, hop: int, scheduler: SchedulerConfig) -> None:
        self.costs, self.config, self.hop, self.scheduler = costs, config, hop, scheduler

    def load(self, audio: int, video: int) -> Load:
        """The load of `audio` audio-only and `video` video-tracking sessions."""
        n = audio + video
        if n == 0:
            return Load(0.0, 0.0)
        hop_s = self.hop / FPS
        windows_per_s = n / hop_s
        rows = min(self.scheduler.max_batch, 1 + (n - 1) * min(1.0, self.scheduler.gather_s / hop_s))
        scheduler = windows_per_s / rows * self.costs.batch(self.scheduler.padded(int(np.ceil(rows))))
        cores = scheduler * self.costs.threads
        cores += video * FPS * self.costs.video_frame_s + n * OUTPUT_FPS * self.costs.avatar_frame_s
        return Load(scheduler, cores)

    def fits(self, audio: int, video: int) -> bool:
        load, cfg = self.load(audio, video), self.config
        return (
            (cfg.video or video == 0)
            and audio + video <= cfg.max_sessions
            and load.scheduler <= cfg.scheduler_utilization
            and load.cores <= cfg.cores * cfg.utilization
        )

    def limits(self) -> dict[str, int]:
        """The most sessions of each kind alone: {"audio": N, "video": M}."""
        return {"audio": self._most(lambda n: self.fits(n, 0)), "video": self._most(lambda n: self.fits(0, n))}

    def _most(self, fits: Callable[[int], bool]) -> int:
        n = 0
        while n < self.config.max_sessions and fits(n + 1):
            n += 1
        return n

    def admit(self, audio: int, video: int, *, new_video: bool, measured: Measured | None = None) -> None:
        """Raise AdmissionError if one more session (tracking video if `new_video`) would not fit beside
        `audio` audio-only and `video` video sessions: by the load model, or by what is `measured` now."""
        if not self.fits(audio + (not new_video), video + new_video):
            raise self._full(audio, video, new_video)
        if measured is None:
            return
        limits, cfg = self.limits(), self.config
        if measured.missed:
            raise AdmissionError(
                f"the running sessions missed {measured.missed} window deadline(s) in the last "
                f"{measured.window_s:g} s: this machine has no room for another session now (limit "
                f"{limits['audio']} audio-only or {limits['video']} video sessions when it is not shared); stop a "
                "session, wait, or start another server",
                limits,
            )
        n = audio + video
        one = self.load(int(not new_video), int(new_video)).cores  # what the model gives one more session
        needed = max(one, measured.process_cores / n if n else 0.0)  # or what each running one costs now
        if measured.machine_cores + needed > cfg.cores * cfg.utilization:
            raise AdmissionError(
                f"the machine is busy: {measured.machine_cores:.2f} of {cfg.cores:g} cores (this server "
                f"{measured.process_cores:.2f}), and one more session needs about {needed:.2f} (at most "
                f"{cfg.utilization:.0%} may be busy); stop a session or start another server",
                limits,
            )

    def _full(self, audio: int, video: int, new_video: bool) -> AdmissionError:
        limits = self.limits()
        if new_video and not self.config.video:
            return AdmissionError('this server takes audio-only sessions (it was started with --no-video): ask '
                                  'for "video": false', limits)  # fmt: skip
        load = self.load(audio, video)
        return AdmissionError(
            f"server full: {audio + video} session(s) running ({video} with video), and one more "
            f"{'video' if new_video else 'audio-only'} session would make windows miss their deadlines on this "
            f"machine (limit {limits['audio']} audio-only or {limits['video']} video sessions; now "
            f"{load.cores:.2f} of {self.config.cores:g} cores busy, the scheduler {load.scheduler:.0%}); stop a "
            "session or start another server",
            limits,
        )


@dataclass(frozen=True)
class Measured:
    """What a LoadMeter sees now."""

    machine_cores: float
    """Cores busy on the whole machine (every process), over the last seconds."""
    process_cores: float
    """Cores this process keeps busy."""
    missed: int
    """Windows the sessions missed (dropped late or stale) over the last `window_s`."""
    window_s: float


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (Linux /proc/stat); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


class LoadMeter:
    """Samples, every `interval_s` on its own thread, the cores busy machine-wide and in this process, and the
    sessions' missed windows (`missed()`: a running total); `now()` gives the last `window_s`. `close()` safe twice."""

    def __init__(self, missed: Callable[[], int], *, interval_s: float = 1.0, window_s: float = 10.0) -> None:
        self.missed, self.interval_s, self.window_s = missed, interval_s, window_s
        self._samples: deque[tuple[float, float, tuple[float, float] | None, int]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="reactdiff-load-meter", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        sample = (time.monotonic(), time.process_time(), machine_busy(), self.missed())
        with self._lock:
            self._samples.append(sample)
            while len(self._samples) > 2 and sample[0] - self._samples[1][0] >= self.window_s:
                self._samples.popleft()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def now(self) -> Measured:
        """The load over the window (since the first sample, at the start)."""
        with self._lock:
            first, last = self._samples[0], self._samples[-1]
        wall = max(last[0] - first[0], 1e-9)
        process = (last[1] - first[1]) / wall
        machine = process
        if first[2] is not None and last[2] is not None and last[2][1] > first[2][1]:
            cores = os.cpu_count() or 1
            machine = (last[2][0] - first[2][0]) / (last[2][1] - first[2][1]) * cores
        return Measured(machine, process, last[3] - first[3], self.window_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def measure_batches(service: InferenceService, sizes: tuple[int, ...] = CALIBRATION_SIZES, reps: int = 5) -> dict:
    """Batch size -> median seconds of `reps` calls of the service (after one warm-up call each)."""
    rng = np.random.default_rng(0)
    out = {}
    for size in sizes:
        arrays = [rng.standard_normal(s).astype(np.float32) for s in window_shapes(service.model, size).values()]
        arrays[2] = np.ones_like(arrays[2])  # present
        service.run_batch(*arrays)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            service.run_batch(*arrays)
            times.append(time.perf_counter() - start)
        out[size] = float(np.median(times))
    return out


def measure_avatar_frame(size: tuple[int, int], avatar: str = "default", frames: int = 20) -> tuple[float, bytes]:
    """Seconds to draw, convert and VP8-encode one avatar frame of `size`; and the first encoded frame (a key frame,
    as a receiver puts it together from its packets)."""
    from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload

    from renderer.avatar import create_avatar
    from renderer.face import FACE_DIM
    from renderer.sinks import to_i420, yuv420p_frame

    encoder, payload = Vp8Encoder(), b""
    with create_avatar(avatar, width=size[0], height=size[1]) as drawn:
        face = np.zeros(FACE_DIM, np.float32)
        start = time.perf_counter()
        for k in range(frames):
            face[0] = k / frames  # a changing face: the encoder has work every frame
            frame = yuv420p_frame(to_i420(drawn.draw(face)))
            frame.pts, frame.time_base = k * 3000, Fraction(1, 90_000)
            payloads, _ = encoder.encode(frame)
            payload = payload or b"".join(vp8_depayload(p) for p in payloads)  # the first (key) frame
        return (time.perf_counter() - start) / frames, payload


def measure_video_frame(size: tuple[int, int], face_model: str | None = None, frames: int = 10) -> float:
    """Seconds to decode one VP8 speaker frame of `size` and track the face in it (MediaPipe FaceLandmarker)."""
    from engine.tracker import FaceTracker
    from renderer.avatar import create_avatar
    from renderer.face import FACE_DIM

    with create_avatar("default", width=size[0], height=size[1]) as drawn:
        rgb = drawn.draw(np.zeros(FACE_DIM, np.float32))
    decode_s = measure_decode(size)
    tracker = FaceTracker(face_model)
    try:
        tracker.track(rgb, 0.0)
        start = time.perf_counter()
        for k in range(frames):
            tracker.track(rgb, (k + 1) / FPS)
        return (time.perf_counter() - start) / frames + decode_s
    finally:
        tracker.close()


def measure_decode(size: tuple[int, int], frames: int = 10) -> float:
    """Seconds to decode one VP8 frame of `size` (aiortc's decoder, as a room's receiver runs it)."""
    from aiortc.codecs.vpx import Vp8Decoder
    from aiortc.jitterbuffer import JitterFrame

    _, payload = measure_avatar_frame(size, frames=1)
    decoder = Vp8Decoder()
    start = time.perf_counter()
    for k in range(frames):
        decoder.decode(JitterFrame(data=payload, timestamp=k * 3000))
    return (time.perf_counter() - start) / frames


def measure_costs(
    service: InferenceService, *, size: tuple[int, int], video: bool, face_model: str | None = None,
    max_batch: int = 16,
) -> Costs:  # fmt: skip
    """The costs of this machine; the tracker is measured only where video sessions are allowed (`video`)."""
    sizes = (*(s for s in CALIBRATION_SIZES if s < max_batch), max_batch)
    batch_s = measure_batches(service, sizes)
    avatar_s, _ = measure_avatar_frame(size)
    video_s = measure_video_frame(size, face_model) if video else 0.0
    threads = service.settings.threads if service.kind is ServiceKind.IN_PROCESS else 0
    costs = Costs(batch_s, threads, video_s, avatar_s)
    log.info("measured costs: %s", costs)
    return costs
