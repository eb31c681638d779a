"""From 25 fps listener frames to rendered 30 fps output: interpolation, the fixed playout delay, the sink.

`FilePlayout` (--fast): renders every output tick k/30 s as soon as the listener frames around it exist, so the
video equals `renderer.timing.interpolate_faces` of the emitted frames. `LivePlayout` (--realtime, devices): a
30 fps clock; tick at wall time `now` shows media time now - origin - delay, and any listener frame needed for
it that no window delivered is filled (hold/decay) on the spot, so the output never stalls.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

from engine.features import SAMPLE_RATE
from engine.runtime.probe import DelayProbe, FrameRecord, ProbeCode, draw_code
from engine.runtime.queues import StageQueue
from engine.runtime.timelines import Emitted, ListenerTimeline
from engine.sources.base import AudioChunk
from engine.stats import StreamStats
from renderer.avatar import Avatar
from renderer.face import FACE_DIM, FPS
from renderer.sinks import Sink
from renderer.timing import FacePacer, FrameClock, output_frame_count

log = logging.getLogger(__name__)

SinkFactory = Callable[[int, int], Sink]  # (width, height) -> an open sink
_POLL_S = 0.05  # how often blocked stages look at the stop flag
PANEL_COLOR = 32  # grey of the speaker panel when there is no speaker video


def on_sink_clock(chunk: AudioChunk, offset_s: float) -> tuple[NDArray[np.float32], float]:
    """(samples, start_s): the chunk placed at its media time + `offset_s` on a sink's clock, less any part
    before the clock's 0 (a live sink starts after media time 0 when the source had input waiting for the engine)."""
    start_s = chunk.t_start_s + offset_s
    if start_s >= 0:
        return chunk.samples, start_s
    return chunk.samples[min(len(chunk.samples), round(-start_s * SAMPLE_RATE)) :], 0.0


def fit_height(rgb: NDArray[np.uint8], height: int) -> NDArray[np.uint8]:
    """Scale an (H, W, 3) frame to `height` rows, keeping its aspect ratio (width rounded to even); a frame already
    that size is returned as it is (the side-by-side panel of a speaker as tall as the avatar costs nothing)."""
    width = max(2, 2 * round(rgb.shape[1] * height / rgb.shape[0] / 2))
    if rgb.shape[:2] == (height, width):
        return rgb
    shrink = height < rgb.shape[0]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(rgb, (width, height), interpolation=interpolation), dtype=np.uint8)


def fit_width(rgb: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    """Crop or pad (grey) an (H, W, 3) frame to `width` columns, centred (the speaker's resolution changed)."""
    if rgb.shape[1] == width:
        return rgb
    out = np.full((rgb.shape[0], width, 3), PANEL_COLOR, np.uint8)
    n = min(width, rgb.shape[1])
    src, dst = (rgb.shape[1] - n) // 2, (width - n) // 2
    out[:, dst : dst + n] = rgb[:, src : src + n]
    return out


class SpeakerPanel:
    """The speaker's video for --side-by-side: frames scaled to the avatar height, looked up by media time."""

    def __init__(self, height: int, *, capacity: int = 150) -> None:
        self.height = height
        self.width: int | None = None
        self._frames: deque[tuple[float, NDArray[np.uint8]]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, t_s: float, rgb: NDArray[np.uint8]) -> None:
        scaled = fit_height(rgb, self.height)
        with self._lock:
            if self.width is None:
                self.width = scaled.shape[1]
            self._frames.append((t_s, fit_width(scaled, self.width)))

    def at(self, t_s: float, width: int) -> NDArray[np.uint8]:
        """The newest frame shown at or before `t_s` (a grey panel before the first one)."""
        with self._lock:
            while len(self._frames) > 1 and self._frames[1][0] <= t_s + 1e-6:
                self._frames.popleft()
            if self._frames and self._frames[0][0] <= t_s + 1e-6:
                return fit_width(self._frames[0][1], width)
        return np.full((self.height, width, 3), PANEL_COLOR, np.uint8)


class Renderer:
    """Draws a listener face with `avatar` (plus the speaker panel) and writes it to a sink opened on the first frame.

    `audio`, if given, holds the speaker's audio chunks; after each frame (and at close) the queued chunks go into
    the sink's audio track, or are discarded by a sink without one. Alignment rule: a chunk starting at media
    time t is written at t + `audio_offset_s` on the sink's clock, where the frame showing media time t is
    stamped. Frames stamped with the media time they show (`render(face, media_t, timestamp_s=media_t)`:
    FilePlayout, and LivePlayout into a file) have offset 0, and the realtime playout delay does not reach the
    file. A live sink (LivePlayout into a room or a camera, possibly teed to a file) is stamped on the playout's
    clock, and the playout sets the offset once media time 0 has a place on it (None until then: chunks wait).
    Either way the speaker sound of media time t plays with the speaker panel frame of media time t and with
    the listener frame for media time t.
    """

    def __init__(
        self, make_sink: SinkFactory, avatar: Avatar, *, panel: SpeakerPanel | None, stats: StreamStats,
        audio: StageQueue[AudioChunk] | None = None,
    ) -> None:  # fmt: skip
        self.avatar = avatar  # drawn in the player thread only; its owner closes it
        self.make_sink, self.panel, self.stats, self.audio = make_sink, panel, stats, audio
        self.sink: Sink | None = None
        self._canvas: NDArray[np.uint8] | None = None
        self.audio_offset_s: float | None = 0.0  # sink time - media time of the speaker audio; None: not known yet

    def _open(self) -> None:
        width, height = self.avatar.width, self.avatar.height
        panel_width = 0
        if self.panel is not None:
            panel_width = self.panel.width or height
        self._canvas = np.zeros((height, panel_width + width, 3), np.uint8)
        self.sink = self.make_sink(panel_width + width, height)

    def render(
        self, face: NDArray[np.float32], media_t: float, timestamp_s: float, mark: ProbeCode | None = None
    ) -> None:
        """Draw `face` (with the speaker panel at `media_t`) and write it stamped `timestamp_s`; `mark`: a delay-probe
        barcode drawn over the avatar's top edge."""
        if self.sink is None:
            self._open()
        assert self.sink is not None and self._canvas is not None
        avatar = self.avatar.draw(face)
        if mark is not None:
            avatar = avatar.copy()  # the avatar may hand out its own buffer
            draw_code(avatar, mark)
        if self.panel is None:
            self.sink.write(avatar, timestamp_s)
        else:
            split = self._canvas.shape[1] - self.avatar.width
            self._canvas[:, :split] = self.panel.at(media_t, split)
            self._canvas[:, split:] = avatar
            self.sink.write(self._canvas, timestamp_s)
        with self.stats.lock:
            self.stats.output_frames += 1
        self._pass_audio()

    def _pass_audio(self) -> None:
        """Queued speaker audio -> the sink's audio track (same thread as the frames: PyAV is not thread-safe)."""
        if self.audio is None or self.sink is None or self.audio_offset_s is None:
            return
        while len(self.audio):
            chunk = self.audio.get(0)
            if chunk is None:
                return
            samples, start_s = on_sink_clock(chunk, self.audio_offset_s)  # where its frame is stamped (see class)
            if self.sink.audio is not None and len(samples):
                self.sink.write_audio(samples, start_s)
            self.audio.task_done()

    def close(self) -> None:
        if self.sink is not None:
            try:
                self._pass_audio()  # the audio still queued (the stream's end, or it stopped)
            finally:
                self.sink.close()


class FilePlayout:
    """Output tick k (time k/fps_out) is rendered once the listener frame after it exists; the rest at the end."""

    def __init__(self, frames: StageQueue[Emitted], renderer: Renderer, stop: threading.Event, *, fps: float) -> None:
        self.frames, self.renderer, self.stop, self.fps = frames, renderer, stop, fps
        self.pacer = FacePacer(capacity=64)
        self._tick = 0
        self._last = -1  # newest listener frame pushed

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                block = self.frames.get(_POLL_S)
            except TimeoutError:
                continue
            if block is None:
                break
            self._push(block)
            self._render_through(self._last)
        if not self.stop.is_set() and self._last >= 0:  # the tail: ticks past the last frame hold it
            total = output_frame_count(self._last + 1, FPS, self.fps)
            while self._tick < total:
                self._render(self._tick)

    def _push(self, block: Emitted) -> None:
        for i, frame in enumerate(block.smoothed):
            self.pacer.push((block.first + i) / FPS, frame[:FACE_DIM])
        self._last = block.first + len(block.smoothed) - 1
        self.frames.task_done()

    def _render_through(self, last: int) -> None:
        # tick k shows time k/fps: it needs the listener frame at or after it
        while math.ceil(self._tick * FPS / self.fps - 1e-9) <= last and not self.stop.is_set():
            self._render(self._tick)

    def _render(self, tick: int) -> None:
        t = tick / self.fps
        self.renderer.render(self.pacer.face_at(t), t, t)
        self._tick += 1


class LivePlayout:
    """A 30 fps clock. At wall time `now` it shows media time m = now - origin - delay(now) (None origin: not yet;
    the delay changes slowly, so m never runs backwards).

    Listener frame f is needed once m passes (f - 1) / 25 (it is the right end of the interpolation); frames
    still missing then are filled. Before the first input a live sink shows the neutral face; the loop ends
    once the source and the worker are finished and the last frame was shown. A live sink is stamped on the
    clock (seconds since its first tick), so media time m is at origin + delay + m - (wall time of that tick).
    A file gets a frame for every 1/fps of media time once m has passed it, stamped with that media time.
    """

    def __init__(
        self, frames: StageQueue[Emitted], renderer: Renderer, listener: ListenerTimeline, stop: threading.Event,
        *, fps: float, delay: Callable[[float], float], origin: Callable[[], float | None],
        speaker_frames: Callable[[], int],
        finished: threading.Event, live_sink: bool, stats: StreamStats, probe: DelayProbe | None = None,
    ) -> None:  # fmt: skip
        self.frames, self.renderer, self.listener, self.stop = frames, renderer, listener, stop
        self.fps, self.delay, self.origin, self.finished = fps, delay, origin, finished
        self.speaker_frames = speaker_frames
        self.live_sink, self.stats, self.probe = live_sink, stats, probe
        self.pacer = FacePacer(capacity=256)
        self._sources: deque[tuple[int, float, int, int]] = deque(maxlen=256)  # (frame, arrival, tag, window)
        self._ticks = 0  # frames rendered
        self._grid = 0  # a file's next frame: media time _grid / fps
        self._last = -1
        self._neutral = listener.neutral[:FACE_DIM]
        if live_sink:
            renderer.audio_offset_s = None  # known once media time 0 has a place on the clock

    def run(self) -> None:
        clock = FrameClock(self.fps)
        clock_start = time.monotonic()  # the clock's first wait() starts it now (within microseconds)
        while not self.stop.is_set():
            tick = clock.wait()
            with self.stats.lock:
                self.stats.output_skipped = clock.skipped
            origin, now = self.origin(), time.monotonic()
            if origin is None:
                if self.live_sink:
                    self.renderer.render(self._neutral, 0.0, tick)
                continue
            delay = self.delay(now)
            if self.renderer.audio_offset_s is None:  # (a live recording's audio stays where the first delay put it)
                self.renderer.audio_offset_s = origin + delay - clock_start
            with self.stats.lock:
                self.stats.playout_delays_s.append(delay)
            media_t = now - origin - delay
            if self._done(media_t):
                return
            self._show(media_t, tick)

    def _done(self, media_t: float) -> bool:
        last = self.speaker_frames() - 1
        return self.finished.is_set() and len(self.frames) == 0 and self._last >= last and media_t * FPS >= last

    def _show(self, media_t: float, tick: float) -> None:
        if media_t >= 0:  # frames needed now that no window delivered: hold/decay (never past the stream's end)
            self.listener.fill_through(min(math.floor(media_t * FPS) + 1, self.speaker_frames() - 1))
        self._drain()
        if media_t < 0 or self._last < 0:
            if self.live_sink:
                self.renderer.render(self._neutral, 0.0, tick)
            return
        if self.live_sink:
            self._render(media_t, tick)
            return
        while self._grid / self.fps <= media_t:  # a file: a frame for each 1/fps of media time, stamped with it
            self._render(self._grid / self.fps, self._grid / self.fps)  # (the delay's changes make media time
            self._grid += 1  # run a little faster or slower than the clock)

    def _render(self, media_t: float, stamp: float) -> None:
        """Draw the face at `media_t`, stamped `stamp`; count its delay, mark and log it for the probe."""
        _, arrival, tag, window = self._source_at(media_t)
        mark = ProbeCode(max(tag, 0), self._ticks) if self.probe is not None and tag >= 0 else None
        started = time.monotonic()
        self.renderer.render(self.pacer.face_at(media_t), media_t, stamp, mark)
        written = time.monotonic()
        if np.isfinite(arrival):
            with self.stats.lock:
                self.stats.delays_s.append(written - arrival)
        if mark is not None and self.probe is not None:
            self.probe.add(FrameRecord(tag, self._ticks, window, started, written))
        self._ticks += 1

    def _source_at(self, media_t: float) -> tuple[int, float, int, int]:
        """(frame, arrival, tag, window) of the newest listener frame the face shown at `media_t` blends in (the
        right end of the interpolation, or the newest frame when it is held); arrival -inf when not known."""
        newest = min(math.ceil(media_t * FPS - 1e-9), self._last)
        for source in reversed(self._sources):
            if source[0] <= newest:
                return source
        return (newest, -np.inf, -1, -1)

    def _drain(self) -> None:
        while len(self.frames):
            block = self.frames.get(0)
            if block is None:
                return
            for i, frame in enumerate(block.smoothed):
                self.pacer.push((block.first + i) / FPS, frame[:FACE_DIM])
                if block.sources is not None:
                    src = block.sources
                    self._sources.append((block.first + i, float(src.arrival_s[i]), int(src.tag[i]), src.window))
            self._last = block.first + len(block.smoothed) - 1
            self.frames.task_done()
