"""The streaming engine: speaker media in, listener avatar frames out, window by window.

    from engine.runtime import StreamConfig, StreamEngine, WindowModel
    model = WindowModel.from_backend(backend)                        # engine.backends.create_backend(...)
    engine = StreamEngine(model, source, make_sink=sink_factory, tracker=FaceTracker(), config=StreamConfig())
    stats = engine.run()                                             # blocks until the source ends

Threads, each behind a bounded queue (queues.StageQueue):

    reader   : iterates the source; audio -> features (per 40 ms frame); video -> tracker queue (size 2 fast,
               1 live); every hop of H frames cuts a window of the last W frames -> window queue (size 1)
    tracker  : video frame -> speaker face (58,), sample-and-held into the speaker timeline
    inference: one window at a time: conditioning on emitted frames, backend, seam join, One Euro -> frames
    player   : listener frames (25 fps) -> interpolated 30 fps avatar -> sink; the speaker's audio chunks, queued
               by the reader (size AUDIO_QUEUE_CHUNKS, oldest dropped and counted), -> the sink's audio track

The sink's clock is media time whenever its timestamps are (files, --fast and --realtime; not a live sink): the
frame stamped t shows the listener at media time t and, with --side-by-side, the speaker frame of media time t.
So the speaker audio of media time t is written at t, in sync with the speaker panel. A live sink (a room, a
camera, either teed to a file) is stamped on the playout's clock instead, and the audio of media time t is
written where the frame showing media time t is stamped (see `playout.Renderer`).

What differs between a fast and a live run is the timing policy (`engine.runtime.timing`, chosen by
`StreamConfig.realtime`): in realtime mode (live devices, rooms, `--realtime` files) late work is dropped and
counted: a video frame replaced by a newer one before tracking, a window replaced by a newer one before
inference, a window whose frames could not be ready before they are shown; listener frames no window produced
in time are filled by hold/decay. In fast mode (files, `--fast`) every queue waits instead, so the frames are
exactly those of `engine.windows.generate_windows` on the same features (then One Euro), whatever the
machine's speed. The threads below never look at the mode.
No thread ever waits without a timeout on something that may not come: `close()` stops and joins them all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from engine.features import FRAME_SAMPLES, SAMPLE_RATE, StreamingAudioFeatures
from engine.runtime.playout import Renderer, SinkFactory, SpeakerPanel
from engine.runtime.probe import DelayProbe, SpeakerRecord, WindowRecord, read_code
from engine.runtime.queues import QueueClosed, StageQueue
from engine.runtime.timelines import (
    Emitted,
    FrameSources,
    ListenerTimeline,
    SpeakerTimeline,
    TrackedFace,
    WindowInputs,
)
from engine.runtime.timing import PlayerParts, PlayoutDelay, TimingKind, create_timing
from engine.smoothing import OneEuroConfig, OneEuroFilter
from engine.sources.base import AudioChunk, Source, VideoFrame
from engine.stats import StreamStats
from engine.windows import WindowFn, WindowPlan, check_hop, check_temperature, dependency_horizon, window_noise
from renderer.avatar import Avatar, Color, create_avatar
from renderer.face import FPS, FRAME_SECONDS

if TYPE_CHECKING:
    from engine.listener import ListenerControl

log = logging.getLogger(__name__)

_POLL_S = 0.05  # how often a blocked thread looks at the stop flag
_PIPELINE_POLL_S = 0.005  # with frames in flight, how often the tracker thread looks for a finished one
AUDIO_QUEUE_CHUNKS = 4096  # speaker audio waiting for the player: ~90 s of a file's 23 ms AAC frames
_EPS = 1e-6


class Tracker(Protocol):
    """What the engine needs of engine.tracker.FaceTracker (tests pass fakes). A tracker that also has
    `submit(rgb, timestamp_s) -> Future` (engine.tracker.ParallelFaceTracker) gets several frames in flight."""

    def track(self, rgb: NDArray[np.uint8], timestamp_s: float) -> Any:
        """A result with `.face` (58,) float32 and `.found` bool."""


@dataclass(frozen=True)
class WindowModel:
    """The model as the window loop sees it: a WindowFn and the shapes from the model directory's manifest."""

    run_window: WindowFn
    window: int
    hop: int
    latent_shape: tuple[int, int]
    listener_dim: int
    neutral_listener: NDArray[np.float32]
    reach: int = 0
    """Speaker frames past a listener frame's latent token that it may depend on (engine.windows.dependency_horizon)."""

    @property
    def downsample(self) -> int:
        """Frames per latent token."""
        return self.window // self.latent_shape[0]

    @classmethod
    def from_backend(cls, backend: Any) -> WindowModel:
        """From an engine.backends.Backend (its run_window and its ModelDir)."""
        return cls.from_model(backend.model, backend.run_window)

    @classmethod
    def from_model(cls, m: Any, run_window: WindowFn) -> WindowModel:
        """From an engine.model_dir.ModelDir and what runs its windows (a backend, the shared scheduler)."""
        reach = int(m.manifest["lookahead"]) * (int(m.manifest["config"].get("encoder_layers", 1)) + 1)
        return cls(run_window, m.window, m.hop, m.latent_shape, m.listener_dim, m.neutral_listener, reach)


@dataclass(frozen=True)
class StreamConfig:
    """How a stream is run."""

    hop: int | None = None
    """Frames between windows (None: the model's default). Must be below the window length."""
    seed: int = 0
    """Noise seed: window k starts from window_noise(seed, k, temperature), as in generate_windows."""
    temperature: float = 1.0
    """How far from the model's most likely reaction a listener may go (engine.windows.window_noise): 1 the
    model's own variety, 0 its most likely reaction every time."""
    realtime: bool = False
    """True: live policies (drop stale/late work, clock-driven 30 fps playout). False: lossless, as fast as possible."""
    latency_budget_s: float = 0.15
    """The live playout delay's first guess, on top of (hop + 1) frames: the time from a window's newest input
    to its frames being ready. The delay then follows what the windows really need (playout_floor/ceiling)."""
    playout_delay_s: float | None = None
    """A fixed delay from input to display (realtime) instead of the adaptive one."""
    playout_floor_s: float | None = None
    """The adaptive delay's least (None: (hop + 1) frames, a window's own span and the frame after it)."""
    playout_ceiling_s: float = 0.6
    """The adaptive delay's most: past it, late windows are skipped and their frames filled."""
    output_fps: float = 30.0
    """Rendered frame rate (listener frames, 25 fps, are interpolated)."""
    size: tuple[int, int] = (256, 256)
    """Avatar (width, height) in pixels."""
    avatar: str = "default"
    """What the player draws when StreamEngine is given no prepared avatar (renderer.avatar.create_avatar): a
    vector style name (renderer.vector.STYLES) or a portrait file (.jpg, .png, .webp)."""
    background: Color | Path | None = None
    """Avatar background: a colour or an image file (renderer.avatar.parse_background); None: the avatar's own."""
    side_by_side: bool = False
    """Draw the speaker's video, scaled to the avatar height, to the left of the avatar."""
    live_sink: bool = False
    """The sink is a live device (virtual camera): show the neutral face until the stream starts, wall-clock stamps."""
    smoothing: OneEuroConfig = field(default_factory=OneEuroConfig)
    """One Euro parameters per dimension group."""
    hold_tau_frames: float = 25.0
    """Time constant (frames) of the decay to neutral in frames filled by hold/decay."""
    record: bool = False
    """Keep every emitted listener frame (raw and smoothed) for inspection (tests, benchmarks)."""
    probe: bool = False
    """The delay probe (engine.runtime.probe; live playout): read each speaker video frame's index barcode, draw on
    each avatar frame the index of the newest speaker frame it depended on, and log every stage's times
    (`StreamEngine.probe`)."""

    @property
    def timing(self) -> TimingKind:
        """The timing policy of the run (engine.runtime.timing)."""
        return TimingKind.REALTIME if self.realtime else TimingKind.FAST

    def playout(self, hop: int) -> PlayoutDelay:
        """The live playout delay's policy for windows `hop` frames apart."""
        if self.playout_delay_s is not None:
            return PlayoutDelay.fixed(self.playout_delay_s)
        floor = self.playout_floor_s if self.playout_floor_s is not None else (hop + 1) / FPS
        ceiling = max(self.playout_ceiling_s, floor)
        return PlayoutDelay(min(max((hop + 1) / FPS + self.latency_budget_s, floor), ceiling), floor, ceiling)


class StreamEngine:
    """One stream from `source` through `model` to a sink made by `make_sink(width, height)` (None: no rendering).

    `avatar`, if given, is a prepared avatar (renderer.avatar) of `config.size` that the player draws with (made
    before the run because a photo's preparation is slow; its caller closes it); None: the player makes one from
    `config.avatar` and closes it at the end.

    `listener_control`, if given, says who listens (engine.listener): each window takes its style and expressiveness
    at its start, so a change made during the run applies from the next window; None: the model's default
    listener (and a WindowFn called without those arguments).

    `run()` blocks until the source ends (or `close()` is called from another thread) and returns the stats;
    errors raised in any thread are re-raised by `run()`. `close()` stops and joins every thread; safe twice.
    """

    def __init__(
        self, model: WindowModel, source: Source, *, make_sink: SinkFactory | None = None,
        tracker: Tracker | None = None, config: StreamConfig | None = None,
        on_emitted: Callable[[Emitted], object] | None = None, avatar: Avatar | None = None,
        listener_control: ListenerControl | None = None,
    ) -> None:  # fmt: skip
        self.model, self.source, self.tracker = model, source, tracker
        self.listener_control = listener_control
        self.config = config = config or StreamConfig()
        check_temperature(config.temperature)
        if avatar is not None and (avatar.width, avatar.height) != config.size:
            raise ValueError(f"the avatar is {avatar.width}x{avatar.height}, the config's size {config.size}")
        self.avatar = avatar
        self.hop = config.hop or model.hop
        check_hop(self.hop, model.window)
        self.timing = timing = create_timing(config.timing, delay=config.playout(self.hop))
        self.stats = StreamStats(mode=timing.kind.value)
        self.has_audio = source.has_audio
        self.has_video = source.has_video and tracker is not None
        if source.has_video and tracker is None:
            log.warning("the source has video but no face tracker was given: the speaker face is marked absent")
        self.speaker = SpeakerTimeline(model.window, has_audio=self.has_audio, has_video=self.has_video)
        self._video_q: StageQueue[tuple[VideoFrame, float]] = StageQueue(
            timing.video_queue_size, lossless=timing.lossless
        )
        self._window_q: StageQueue[WindowInputs] = StageQueue(1, lossless=timing.lossless)
        self._frames_q: StageQueue[Emitted] = StageQueue(1_000_000, lossless=False)  # backpressure: wait_below
        # audio for the sink, placed on its clock by the player (playout.Renderer); lossy, so the reader never
        # waits on the player; the player drains it every frame
        self._audio_q: StageQueue[AudioChunk] | None = None
        if make_sink is not None and self.has_audio:
            self._audio_q = StageQueue(AUDIO_QUEUE_CHUNKS, lossless=False)
        smoother = OneEuroFilter(config.smoothing.per_dimension(model.listener_dim), fps=FPS)
        self.on_emitted = on_emitted  # also gets every emitted run (e.g. a room's reactions channel)
        self.listener = ListenerTimeline(
            model.window, model.neutral_listener, smoother, self._emit,
            hold_tau_frames=config.hold_tau_frames, record=config.record,
        )  # fmt: skip
        self.panel = SpeakerPanel(config.size[1]) if config.side_by_side else None
        self.probe = DelayProbe() if config.probe else None
        self.make_sink = make_sink
        self._features = StreamingAudioFeatures()
        self._stop, self._worker_done = threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._start = 0.0
        self._k = 0  # next window's index
        self._last_end = -1  # last frame of the last window cut
        self._video_reached = -np.inf  # media time of the newest video frame read
        self._silence_samples = 0  # silence fed to the features for video-only sources
        self._audio_samples = 0  # 16 kHz samples fed to the features

    def _emit(self, block: Emitted) -> None:
        self._frames_q.put(block)
        if self.on_emitted is not None:
            self.on_emitted(block)

    # --- public ------------------------------------------------------------------------------------------------

    def run(
        self, on_status: Callable[[StreamStats], None] | None = None, status_every_s: float = 0.5,
        stop: threading.Event | None = None,
    ) -> StreamStats:  # fmt: skip
        """Run the stream to its end, or until `stop` is set; `on_status(stats)` is called from this thread every
        `status_every_s`. Either way every thread has stopped and the sink is closed (its file complete) on return."""
        self._start = time.monotonic()
        self.timing.start(self._start)
        self._spawn()
        try:
            while any(t.is_alive() for t in self._threads) and not (stop is not None and stop.is_set()):
                for thread in self._threads:
                    thread.join(status_every_s / max(1, len(self._threads)))
                self._refresh_stats()
                if on_status is not None:
                    on_status(self.stats)
        finally:
            self.close()
        if self._errors:
            raise self._errors[0]
        return self.stats

    def close(self) -> None:
        """Stop every thread and wait for them; closes the source and the sink (not the backend or tracker)."""
        self._stop.set()
        self.source.close()
        self._close_queues()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        self._refresh_stats()

    def recorded(self) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]:
        """(raw (T, 83), smoothed (T, 83), filled (T,)) of every emitted listener frame (config.record=True)."""
        return self.listener.recorded_frames()

    # --- threads -----------------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        targets: list[tuple[str, Callable[[], None]]] = [("reader", self._read), ("inference", self._infer)]
        if self.has_video:
            targets.append(("tracker", self._track))
        targets.append(("player", self._play))
        for name, target in targets:
            thread = threading.Thread(target=self._guard, args=(target,), name=f"reactdiff-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except QueueClosed:
            if not self._stop.is_set():
                raise
        except BaseException as exc:  # handed to run(), which re-raises it in the caller's thread
            log.debug("%s failed", threading.current_thread().name, exc_info=True)
            self._errors.append(exc)
            self._stop.set()
            self.source.close()
            self._close_queues()

    def _close_queues(self) -> None:
        for q in (self._video_q, self._window_q, self._frames_q, self._audio_q):
            if q is not None:
                q.close()

    # reader -------------------------------------------------------------------------------------------------------

    def _read(self) -> None:
        try:
            for item in self.source:
                if self._stop.is_set():
                    return
                if isinstance(item, AudioChunk):
                    self._on_audio(item)
                    self._queue_audio(item)
                elif self.has_video:
                    self._on_video(item)
                elif not self.has_audio:  # video, but no tracker and no audio: the frames still keep the clock
                    self._on_video_clock(item)
                self._cut_windows(final=False)
            self._video_reached = np.inf
            self._cut_windows(final=True)  # before closing the tracker's queue: wait_idle returns on a closed one
        finally:
            self._video_q.close()
            self._window_q.close()

    def _on_audio(self, chunk: AudioChunk) -> None:
        self.timing.observe(chunk.arrival_s, chunk.t_end_s)
        gap = round(chunk.t_start_s * SAMPLE_RATE) - self._audio_samples
        samples = chunk.samples if gap <= 0 else np.concatenate([np.zeros(gap, np.float32), chunk.samples])
        if gap > 0:  # the source lost audio (a device dropped blocks): silence keeps the frames on media time
            log.debug("%d samples missing before %.3f s; filled with silence", gap, chunk.t_start_s)
        self._audio_samples += len(samples)
        features = self._features.push(samples)
        if len(features):  # feature frame i is complete at media time (i + 1) * 40 ms
            first = self.speaker.frames
            ends_s = (np.arange(first, first + len(features)) + 1) * FRAME_SECONDS
            self.speaker.add_audio(features, self.timing.arrivals(ends_s, chunk.arrival_s))

    def _queue_audio(self, chunk: AudioChunk) -> None:
        if self._audio_q is not None and not self._audio_q.put(chunk):
            with self.stats.lock:
                self.stats.audio_dropped += 1

    def _on_video_clock(self, frame: VideoFrame) -> None:
        """Video-only input: silence up to the end of the frame's 40 ms slot, so audio features keep the clock."""
        self.timing.observe(frame.arrival_s, frame.t_s)
        target = (int(np.floor(frame.t_s * FPS + _EPS)) + 1) * FRAME_SAMPLES
        if target > self._silence_samples:
            silence = np.zeros(target - self._silence_samples, np.float32)
            self._silence_samples = target
            self._on_audio(AudioChunk(silence, (target - len(silence)) / SAMPLE_RATE, frame.arrival_s))

    def _on_video(self, frame: VideoFrame) -> None:
        if not self.has_audio:
            self._on_video_clock(frame)
        self.timing.observe(frame.arrival_s, frame.t_s)
        with self.stats.lock:
            self.stats.video_frames += 1
        arrival = float(self.timing.arrivals(np.array([frame.t_s]), frame.arrival_s)[0])
        if self.panel is not None:
            self.panel.add(frame.t_s, frame.rgb)
        self._video_reached = frame.t_s
        if not self._video_q.put((frame, arrival)):
            with self.stats.lock:
                self.stats.tracker_dropped += 1

    def _cut_windows(self, *, final: bool) -> None:
        """Cut every window whose frames are complete (and, in fast mode, whose faces are all tracked)."""
        while not self._stop.is_set():
            frames = self.speaker.frames
            end = (self._k + 1) * self.hop - 1
            if end >= frames:
                if not final or frames == 0 or self._last_end == frames - 1:
                    return
                end = frames - 1  # the stream's last, shorter window (as plan_windows makes it)
            if not self._faces_ready(end):
                return
            plan = WindowPlan(end=end, window=self.model.window, hop=end - self._last_end)
            job = self.speaker.window_inputs(self._k, plan)
            self._k, self._last_end = self._k + 1, end
            if not self._window_q.put(job):
                with self.stats.lock:
                    self.stats.windows_dropped_stale += 1

    def _faces_ready(self, end: int) -> bool:
        needed_s = (end + 1) * FRAME_SECONDS - _EPS  # a video frame before the window's end is one of its faces
        return not self.has_video or self.timing.faces_ready(needed_s, self._video_reached, self._video_q.wait_idle)

    # tracker ------------------------------------------------------------------------------------------------------

    def _track(self) -> None:
        assert self.tracker is not None
        submit = getattr(self.tracker, "submit", None)
        if submit is not None:
            return self._track_pipelined(submit)
        while not self._stop.is_set():
            try:
                item = self._video_q.get(_POLL_S)
            except TimeoutError:
                continue
            if item is None:
                return
            frame, arrival = item
            start = time.perf_counter()
            result = self.tracker.track(frame.rgb, frame.t_s)
            self._tracked(frame, arrival, result, time.perf_counter() - start)

    def _track_pipelined(self, submit: Callable[[NDArray[np.uint8], float], Future[Any]]) -> None:
        """Several frames in flight (a ParallelFaceTracker); faces still reach the timeline in frame order."""
        in_flight: deque[tuple[VideoFrame, float, Future[Any]]] = deque()
        depth = 2 * len(getattr(self.tracker, "trackers", [None]))

        def finish_oldest() -> None:
            frame, arrival, future = in_flight.popleft()
            result = future.result()
            self._tracked(frame, arrival, result, result.seconds)

        while not self._stop.is_set():
            if in_flight and (in_flight[0][2].done() or len(in_flight) >= depth):
                finish_oldest()
                continue
            try:
                item = self._video_q.get(_PIPELINE_POLL_S if in_flight else _POLL_S)
            except TimeoutError:
                continue
            if item is None:
                while in_flight:
                    finish_oldest()
                return
            frame, arrival = item
            in_flight.append((frame, arrival, submit(frame.rgb, frame.t_s)))

    def _tracked(self, frame: VideoFrame, arrival: float, result: Any, spent: float) -> None:
        code = read_code(frame.rgb) if self.probe is not None else None
        tag = -1 if code is None else code.index
        face = TrackedFace(frame.t_s, np.asarray(result.face, np.float32), bool(result.found), arrival, tag)
        self.speaker.add_face(face)
        if self.probe is not None and tag >= 0:
            self.probe.add(SpeakerRecord(tag, arrival, time.monotonic()))
        with self.stats.lock:
            self.stats.tracked_frames += 1
            self.stats.tracker_s += spent
        self._video_q.task_done()

    # inference ----------------------------------------------------------------------------------------------------

    def _infer(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    job = self._window_q.get(_POLL_S)
                except TimeoutError:
                    continue
                if job is None:
                    return
                self._run_window(job)
                self._window_q.task_done()
                self.timing.after_window(self._frames_q)
        finally:
            self._worker_done.set()
            self.timing.windows_done(self._frames_q)

    def _run_window(self, job: WindowInputs) -> None:
        plan = self.listener.plan(job.end)
        if plan is None or self.timing.skip(plan, time.monotonic()):
            with self.stats.lock:
                self.stats.windows_dropped_late += 1
            return
        known, known_mask = self.listener.conditioning(plan)
        noise = window_noise(self.config.seed, job.k, 1, self.model.latent_shape, self.config.temperature)
        control = self.listener_control
        who = {} if control is None else control.window_inputs(plan.first_new)  # who listens, read once per window
        start = time.monotonic()
        frames_w = self.model.run_window(job.audio, job.face, job.present, known, known_mask, noise, **who)
        finished = time.monotonic()
        ready = self.timing.ran(plan, job.newest_arrival_s, start, finished)
        depends = dependency_horizon(plan, self.model.downsample, self.model.reach) - plan.start  # (W,) window rows
        sources = FrameSources(job.arrivals_s[depends], job.tags[depends], job.k)
        emitted = self.listener.commit(plan, np.asarray(frames_w, np.float32), sources)
        if self.probe is not None:
            self.probe.add(WindowRecord(job.k, job.cut_s, start, time.monotonic()))
        with self.stats.lock:
            self.stats.windows_run += 1
            self.stats.inference_s += finished - start
            self.stats.frames_generated += emitted
            self.stats.latencies_s.extend([ready - job.newest_arrival_s] * emitted)

    # player -------------------------------------------------------------------------------------------------------

    def _play(self) -> None:
        if self.make_sink is None:  # no rendering: consume frames so the worker never waits
            self._drain_frames()
            return
        avatar = self.avatar or create_avatar(
            self.config.avatar, width=self.config.size[0], height=self.config.size[1],
            background=self.config.background,
        )  # fmt: skip
        renderer = Renderer(self.make_sink, avatar, panel=self.panel, stats=self.stats, audio=self._audio_q)
        parts = PlayerParts(
            self._frames_q, renderer, self.listener, self._stop, fps=self.config.output_fps,
            speaker_frames=lambda: self.speaker.frames, finished=self._worker_done,
            live_sink=self.config.live_sink, stats=self.stats, probe=self.probe,
        )  # fmt: skip
        try:
            self.timing.player(parts).run()
        finally:
            try:
                renderer.close()
            finally:
                if avatar is not self.avatar:  # made here
                    avatar.close()

    def _drain_frames(self) -> None:
        while not self._stop.is_set():
            if self._worker_done.is_set() and len(self._frames_q) == 0:
                return  # every window ran and nothing is left (a live queue is never closed)
            try:
                block = self._frames_q.get(_POLL_S)
            except TimeoutError:
                continue
            if block is None:
                return
            self._frames_q.task_done()

    # stats --------------------------------------------------------------------------------------------------------

    def _refresh_stats(self) -> None:
        with self.stats.lock:
            self.stats.media_s = self.speaker.frames * FRAME_SECONDS
            self.stats.wall_s = time.monotonic() - self._start if self._start else 0.0
            self.stats.frames_filled = self.listener.filled
