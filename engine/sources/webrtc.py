"""aiortc `MediaStreamTrack`s (a remote speaker's audio and/or video) as a speaker source.

From asyncio:

    source = WebRTCSource(audio=audio_track, video=video_track)
    async for item in source: ...

From a worker thread (the loop keeps only receiving):

    source.start()                                   # on the event loop
    loop.run_in_executor(None, consume, source)      # consume() does `for item in source: ...`

Audio (aiortc delivers s16 stereo 48 kHz) is resampled to 16 kHz mono on the loop: a 20 ms frame costs
microseconds. Video frames stay `av.VideoFrame`s until the consumer reads `VideoFrame.rgb`, so the colour
conversion runs in the consumer's thread, not on the loop.

Time: audio media time counts delivered 16 kHz samples. Video keeps the spacing of its own timestamps and is
anchored to the audio clock when its first frame arrives (RTP clocks of different tracks share no origin).
A track that ends (`MediaStreamError`) ends its part of the stream; when every track has ended, so has the source.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from engine.features import SAMPLE_RATE
from engine.sources.audio import MonoResampler
from engine.sources.base import (
    AudioChunk,
    DropOldestQueue,
    Media,
    Source,
    SourceError,
    SourceKind,
    VideoFrame,
    register_source,
)

log = logging.getLogger(__name__)


def _checked_track(track: MediaStreamTrack | None, kind: str) -> MediaStreamTrack | None:
    if track is not None and track.kind != kind:
        raise SourceError(f"WebRTC source: the {kind} track given is a {track.kind!r} track")
    return track


@register_source
class WebRTCSource(Source):
    """Speaker media received on aiortc tracks. `queue_size`: items each queue holds before dropping the oldest."""

    kind = SourceKind.WEBRTC

    def __init__(
        self, *, audio: MediaStreamTrack | None = None, video: MediaStreamTrack | None = None, queue_size: int = 64
    ) -> None:
        super().__init__()
        if audio is None and video is None:
            raise SourceError("WebRTC source: give an audio track, a video track or both")
        self._audio_track = _checked_track(audio, "audio")
        self._video_track = _checked_track(video, "video")
        self.queue_size = queue_size
        self._resampler = MonoResampler(what="WebRTC audio track")
        self._thread_queue: DropOldestQueue[Media] = DropOldestQueue(queue_size)
        self._items: deque[Media] = deque()  # received, not yet taken by the async consumer
        self._loop_drops = 0  # items dropped from `_items` (the thread queue counts its own)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._error: BaseException | None = None
        self._closed = threading.Event()
        self._consumer: str | None = None  # "async" or "thread": a source has one consumer
        self._start_s = 0.0
        self._audio_samples = 0  # the audio clock, 16 kHz samples
        self._last_audio: tuple[float, float] | None = None  # (media end time, arrival) of the newest chunk
        self._video_anchor: tuple[float, float] | None = None  # (first frame's own time, its media time)

    @property
    def has_audio(self) -> bool:
        return self._audio_track is not None

    @property
    def has_video(self) -> bool:
        return self._video_track is not None

    # --- consumers -------------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Media]:
        self._claim("async")
        return self._stream()

    def start(self) -> asyncio.Task[None]:
        """On the event loop: start receiving into a bounded thread-side queue that `__iter__` reads."""
        self._claim("thread")
        return asyncio.get_running_loop().create_task(self._feed(), name="webrtc-source-feed")

    def __iter__(self) -> Iterator[Media]:
        if self._consumer != "thread":
            raise SourceError("WebRTC source: call start() on the event loop before iterating it from a thread")
        while (item := self._thread_queue.get()) is not None:
            yield item
        self._raise_if_failed()

    def _claim(self, consumer: str) -> None:
        if self._consumer is not None:
            raise SourceError(f"WebRTC source: already consumed ({self._consumer}); a source has one consumer")
        self._consumer = consumer

    async def _feed(self) -> None:
        try:
            async for item in self._stream():
                self._thread_queue.put(item)
                self.stats.dropped = self._loop_drops + self._thread_queue.dropped
        except SourceError as exc:
            self._error = exc
        finally:
            self._thread_queue.close()

    # --- receiving on the loop -------------------------------------------------------------------------

    async def _stream(self) -> AsyncIterator[Media]:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._start_s = time.monotonic()
        tracks = [t for t in (self._audio_track, self._video_track) if t is not None]
        self._pumps = [asyncio.create_task(self._pump(t), name=f"webrtc-source-{t.kind}") for t in tracks]
        try:
            while not self._closed.is_set():
                if self._items:
                    yield self._items.popleft()
                elif all(p.done() for p in self._pumps):
                    break
                else:
                    await self._wake.wait()
                    self._wake.clear()
        finally:
            for pump in self._pumps:
                pump.cancel()
        self._raise_if_failed()

    async def _pump(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                item = self._convert(frame, time.monotonic())
                if item is not None:
                    self._push(item)
        except MediaStreamError:
            log.info("WebRTC %s track ended", track.kind)
        except Exception as exc:  # surfaced to the consumer as a SourceError
            self._error = exc
        finally:
            if self._wake is not None:
                self._wake.set()

    def _push(self, item: Media) -> None:
        if len(self._items) >= self.queue_size:
            self._items.popleft()
            self._loop_drops += 1
            self.stats.dropped = self._loop_drops + self._thread_queue.dropped
        self._items.append(item)
        if self._wake is not None:
            self._wake.set()

    def _convert(self, frame: object, arrival: float) -> Media | None:
        if isinstance(frame, av.AudioFrame):
            samples = self._resampler.push(frame)
            self.stats.format_changes = self._resampler.format_changes
            if samples.size == 0:
                return None
            chunk = AudioChunk(samples, self._audio_samples / SAMPLE_RATE, arrival)
            self._audio_samples += len(samples)
            self._last_audio = (chunk.t_end_s, arrival)
            self.stats.audio_chunks += 1
            self.stats.audio_samples += len(samples)
            return chunk
        if not isinstance(frame, av.VideoFrame):
            raise SourceError(f"WebRTC source: a track delivered a {type(frame).__name__}, not an audio or video frame")
        self.stats.video_frames += 1
        return VideoFrame(frame, self._video_time(frame, arrival), arrival)

    def _video_time(self, frame: av.VideoFrame, arrival: float) -> float:
        """Media time of a video frame: its own timestamp spacing, anchored to the audio clock at the first frame."""
        now = self._media_now(arrival)
        if frame.time is None:
            return now
        if self._video_anchor is None:
            self._video_anchor = (float(frame.time), now)
        own, media = self._video_anchor
        return media + float(frame.time) - own

    def _media_now(self, arrival: float) -> float:
        """The audio clock's estimate of media time at `arrival` (wall time since start when there is no audio yet)."""
        if self._last_audio is None:
            return arrival - self._start_s
        end_s, at = self._last_audio
        return end_s + arrival - at

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, SourceError):
                raise error
            raise SourceError(f"WebRTC source: receiving failed ({error!r})") from error

    def close(self) -> None:
        """Stop receiving (the tracks themselves belong to the peer connection and are left running)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread_queue.close()
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        for pump in self._pumps:
            loop.call_soon_threadsafe(pump.cancel)
        loop.call_soon_threadsafe(wake.set)
