"""The avatar as aiortc video tracks: a render thread writes frames, peer connections pull them.

    sink = create_sink(SinkKind.WEBRTC, width=640, height=360)
    pc.addTrack(sink.track)          # on the event loop: one consumer
    pc.addTrack(sink.track.subscribe())   # or one copy of the track per peer connection
    sink.write(rgb, t)               # from the render thread; never blocks

`write()` only appends to bounded queues (the oldest frame is dropped and counted when one is full);
`recv()` runs on the event loop and returns the newest frame as soon as the render thread writes it (the renderer's
30 fps clock paces the track; pts follow the wall clock), or the last frame again when the renderer is a frame and
a half late, so the encoder keeps its frame rate.

Frames travel as yuv420p, what aiortc's VP8 and H.264 encoders take (they reformat only other formats):
`write()` converts each image once, in the render thread (renderer.sinks.to_i420, ~0.15 ms at 1280x720 against
~4 ms for the swscale conversion an RGB frame would cost each peer's encoder). Each peer connection encodes in a
worker thread of its own and stamps its frames' pts, so every subscriber gets its own `av.VideoFrame` of each
image, over the same read-only planes (no copy); `write()` makes them too: the event loop only hands frames over.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from fractions import Fraction
from typing import Generic, TypeVar

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from renderer.sinks import Sink, SinkKind, to_i420, yuv420p_frame

VIDEO_CLOCK_RATE = 90_000  # RTP video clock, Hz
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
T = TypeVar("T")


class _Outlet(Generic[T]):
    """What one consumer of the avatar has waiting: a bounded queue (the oldest dropped and counted) and the item
    shown last. `take()` hands out the newest item as soon as one is offered (older ones are dropped and counted),
    so a frame waits for its encoder only while the previous one is being encoded, not for a pacing grid of the
    consumer's own (whose phase against the renderer's clock added 0-33 ms at 30 fps). When nothing new comes for
    a frame and a half, the last item goes out again, so the encoder keeps its frame rate through a stall."""

    def __init__(self, fps: float, size: int, first: T | None) -> None:
        self.fps, self.size = fps, size
        self.dropped = 0
        self._queue: deque[T] = deque()
        self._last = first
        self._lock = threading.Lock()
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None  # the consumer's, once it takes
        self._start: float | None = None  # time.monotonic() of the first take: pts 0
        self._taken_s = -np.inf  # when the previous item went out
        self._fresh = True  # whether it was new (False: a repeat)
        self._pts = -1

    def offer(self, item: T) -> None:
        """Thread-safe, never blocks; wakes a consumer waiting in take()."""
        with self._lock:
            if len(self._queue) >= self.size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(item)
            wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # the consumer's loop is closed: nobody waits
                wake[0].call_soon_threadsafe(wake[1].set)

    def waiting(self) -> list[T]:
        with self._lock:
            return list(self._queue)

    async def take(self) -> tuple[int, T | None]:
        """(pts in 1/90000 s since the first take, the newest item, or the last one again after a frame and a half
        without one), no sooner than half a frame after the previous take (a burst goes out as its newest item)."""
        if self._wake is None:
            self._wake = (asyncio.get_running_loop(), asyncio.Event())
        wake = self._wake[1]
        now = time.monotonic()
        await asyncio.sleep(max(0.0, self._taken_s + 0.5 / self.fps - now))
        deadline = self._taken_s + (1.5 if self._fresh else 1.0) / self.fps
        while not self._has_items() and (left := deadline - time.monotonic()) > 0:
            wake.clear()
            if self._has_items():  # offered between the check and the clear
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), left)
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._taken_s = now
        self._pts = max(self._pts + 1, round((now - self._start) * VIDEO_CLOCK_RATE))
        with self._lock:
            self._fresh = bool(self._queue)
            if self._queue:
                self._last = self._queue.pop()
                self.dropped += len(self._queue)
                self._queue.clear()
        return self._pts, self._last

    def _has_items(self) -> bool:
        with self._lock:
            return bool(self._queue)


class AvatarVideoTrack(MediaStreamTrack):
    """A video `MediaStreamTrack` fed from a bounded, thread-safe queue of RGB frames (see the module docstring)."""

    kind = "video"

    def __init__(self, *, width: int, height: int, fps: float = 30.0, queue_size: int = 4) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if width % 2 or height % 2:
            raise ValueError(f"the avatar track (yuv420p) needs an even frame size, got {width}x{height}")
        self.width, self.height, self.fps = width, height, fps
        black = to_i420(np.zeros((height, width, 3), dtype=np.uint8))  # shown until the first frame arrives
        self._outlet: _Outlet[np.ndarray] = _Outlet(fps, queue_size, black)  # (H * 3 // 2, W) I420 planes
        self._newest = black  # the last frame put (a new subscriber starts from it)
        self._lock = threading.Lock()
        self._subscribers: list[SubscribedVideoTrack] = []

    @property
    def dropped(self) -> int:
        """Frames pushed out of the full queue before recv() took them."""
        return self._outlet.dropped

    @property
    def queue_size(self) -> int:
        """Frames each consumer (recv() or a subscriber) may have waiting."""
        return self._outlet.size

    def put(self, frame: np.ndarray) -> None:
        """Queue one (height, width, 3) uint8 RGB frame (converted to yuv420p, so the caller may reuse it) for
        recv() and every subscriber; thread-safe, never blocks. The subscribers' frames are made here, in the
        caller's thread."""
        planes = to_i420(frame)
        self._outlet.offer(planes)
        with self._lock:
            self._newest = planes
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.outlet.offer(yuv420p_frame(planes))

    def subscribe(self) -> SubscribedVideoTrack:
        """A track of its own for one peer connection, starting from the newest frame and fed by every put() from
        then on; stop() it to unsubscribe. (Started from the frames waiting, it would stay that many frames behind
        for good: put() and recv() both run at fps.)"""
        track = SubscribedVideoTrack(self)
        with self._lock:
            self._subscribers.append(track)
            newest = self._newest
        track.outlet.offer(yuv420p_frame(newest))
        return track

    def unsubscribe(self, track: SubscribedVideoTrack) -> None:
        with self._lock:
            if track in self._subscribers:
                self._subscribers.remove(track)

    def stop(self) -> None:
        super().stop()
        with self._lock:
            subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.stop()

    async def recv(self) -> av.VideoFrame:
        """The newest frame once written (or the last one again, see `_Outlet.take`); pts in 1/90000 s."""
        if self.readyState != "live":
            raise MediaStreamError
        pts, planes = await self._outlet.take()
        assert planes is not None  # the outlet starts from a black frame
        frame = yuv420p_frame(planes)  # over the planes: no pixel work on the loop
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        return frame


class SubscribedVideoTrack(MediaStreamTrack):
    """One peer connection's copy of an AvatarVideoTrack: ready-made frames, taken as its source's are."""

    kind = "video"

    def __init__(self, source: AvatarVideoTrack) -> None:
        super().__init__()
        self._source = source
        self.outlet: _Outlet[av.VideoFrame] = _Outlet(source.fps, source.queue_size, None)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts, frame = await self.outlet.take()
        assert frame is not None  # subscribe() offers at least one frame
        # a repeated frame is the same object with a new pts: this track's encoder is done with it (it encodes one
        # frame at a time, and asks for the next only then)
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        self._source.unsubscribe(self)


class WebRTCSink(Sink):
    """A Sink whose frames come out of `self.track` (an `AvatarVideoTrack`) for an aiortc peer connection."""

    kind = SinkKind.WEBRTC

    def __init__(self, *, width: int, height: int, fps: float = 30.0, queue_size: int = 4) -> None:
        super().__init__(width=width, height=height, fps=fps)
        self.track = AvatarVideoTrack(width=self.width, height=self.height, fps=self.fps, queue_size=queue_size)

    @property
    def dropped(self) -> int:
        """Frames dropped because the peer connection did not take them in time."""
        return self.track.dropped

    def _write(self, frame: np.ndarray, timestamp_s: float) -> None:
        self.track.put(frame)

    def _close(self) -> None:
        self.track.stop()
