"""The avatar as aiortc video tracks: a render thread writes frames, peer connections pull them.

    sink = create_sink(SinkKind.WEBRTC, width=640, height=360)
    pc.addTrack(sink.track)          # on the event loop: one consumer
    pc.addTrack(sink.track.subscribe())   # or one copy of the track per peer connection
    sink.write(rgb, t)               # from the render thread; never blocks

`write()` only appends to bounded queues (the oldest frame is dropped and counted when one is full);
`recv()` runs on the event loop, paces itself at the track's frame rate and repeats the last frame when
the renderer is late, so the encoder always gets a steady 30 fps.

Each peer connection encodes in a worker thread of its own, and a PyAV frame must not be reformatted by two
threads at once (it crashes), so every subscriber gets its own `av.VideoFrame` of each image. `write()` makes
them, in the render thread: the event loop only hands frames over (a 1280x720 copy costs about 1.3 ms).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from fractions import Fraction
from typing import TypeVar

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from renderer.sinks import Sink, SinkKind

VIDEO_CLOCK_RATE = 90_000  # RTP video clock, Hz
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
T = TypeVar("T")


class _Pacer:
    """Frame k of a track is due k / fps after its first recv(); pts in 1/90000 s."""

    def __init__(self, fps: float) -> None:
        self.fps, self.count = fps, 0
        self._start: float | None = None

    async def next_pts(self) -> int:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        await asyncio.sleep(max(0.0, self._start + self.count / self.fps - now))
        pts = round(self.count * VIDEO_CLOCK_RATE / self.fps)
        self.count += 1
        return pts


class AvatarVideoTrack(MediaStreamTrack):
    """A video `MediaStreamTrack` fed from a bounded, thread-safe queue of RGB frames (see the module docstring)."""

    kind = "video"

    def __init__(self, *, width: int, height: int, fps: float = 30.0, queue_size: int = 4) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.width, self.height, self.fps = width, height, fps
        self.dropped = 0  # frames pushed out of the full queue before recv() took them
        self._queue: deque[np.ndarray] = deque()
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._last = np.zeros((height, width, 3), dtype=np.uint8)  # shown until the first frame arrives
        self._newest = self._last  # the last frame put (a new subscriber starts from it)
        self._pacer = _Pacer(fps)
        self._subscribers: list[SubscribedVideoTrack] = []

    def put(self, frame: np.ndarray) -> None:
        """Queue one (height, width, 3) uint8 frame (copied) for recv() and every subscriber; thread-safe, never
        blocks. The subscribers' frames are made here, in the caller's thread."""
        copy = frame.copy()
        with self._lock:
            self.dropped += _bounded_append(self._queue, copy, self.queue_size)
            self._newest = copy
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.offer(av.VideoFrame.from_ndarray(copy, format="rgb24"))

    def subscribe(self) -> SubscribedVideoTrack:
        """A track of its own for one peer connection, starting from the frames waiting now (at least the newest)
        and fed by every put() from then on; stop() it to unsubscribe."""
        track = SubscribedVideoTrack(self)
        with self._lock:
            self._subscribers.append(track)
            waiting = list(self._queue) or [self._newest]
        for rgb in waiting:
            track.offer(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
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
        """The next frame, due at frame index / fps after the first call; pts in 1/90000 s."""
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next_pts()
        with self._lock:
            if self._queue:
                self._last = self._queue.popleft()
        frame = av.VideoFrame.from_ndarray(self._last, format="rgb24")
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        return frame


class SubscribedVideoTrack(MediaStreamTrack):
    """One peer connection's copy of an AvatarVideoTrack: ready-made frames, paced like its source."""

    kind = "video"

    def __init__(self, source: AvatarVideoTrack) -> None:
        super().__init__()
        self._source = source
        self._queue: deque[av.VideoFrame] = deque()
        self._lock = threading.Lock()
        self._last: av.VideoFrame | None = None
        self._pacer = _Pacer(source.fps)
        self.dropped = 0

    def offer(self, frame: av.VideoFrame) -> None:
        """Called by the source's put() (any thread)."""
        with self._lock:
            self.dropped += _bounded_append(self._queue, frame, self._source.queue_size)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next_pts()
        with self._lock:
            if self._queue:
                self._last = self._queue.popleft()
        if self._last is None:  # nothing rendered yet: black, made once
            black = np.zeros((self._source.height, self._source.width, 3), np.uint8)
            self._last = av.VideoFrame.from_ndarray(black, format="rgb24")
        # a repeated frame is the same object with a new pts: this track's encoder is done with it (it encodes one
        # frame at a time, and asks for the next only then)
        self._last.pts, self._last.time_base = pts, VIDEO_TIME_BASE
        return self._last

    def stop(self) -> None:
        super().stop()
        self._source.unsubscribe(self)


def _bounded_append(queue: deque[T], item: T, size: int) -> int:
    """Append, dropping the oldest beyond `size`; returns how many were dropped (0 or 1)."""
    dropped = 0
    if len(queue) >= size:
        queue.popleft()
        dropped = 1
    queue.append(item)
    return dropped


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
