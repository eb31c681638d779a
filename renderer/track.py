"""The avatar as an aiortc video track: a render thread writes frames, the peer connection pulls them.

    sink = create_sink(SinkKind.WEBRTC, width=640, height=360)
    pc.addTrack(sink.track)          # on the event loop
    sink.write(rgb, t)               # from the render thread; never blocks

`write()` only appends to a bounded queue (the oldest frame is dropped and counted when it is full);
`recv()` runs on the event loop, paces itself at the track's frame rate and repeats the last frame when
the renderer is late, so the encoder always gets a steady 30 fps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from renderer.sinks import Sink, SinkKind

VIDEO_CLOCK_RATE = 90_000  # RTP video clock, Hz
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)


class AvatarVideoTrack(MediaStreamTrack):
    """A video `MediaStreamTrack` fed from a bounded, thread-safe queue of RGB frames."""

    kind = "video"

    def __init__(self, *, width: int, height: int, fps: float = 30.0, queue_size: int = 4) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.width, self.height, self.fps = width, height, fps
        self.dropped = 0  # frames pushed out of the full queue before recv() took them
        self._queue: deque[np.ndarray] = deque()
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._last = np.zeros((height, width, 3), dtype=np.uint8)  # shown until the first frame arrives
        self._start: float | None = None
        self._count = 0

    def put(self, frame: np.ndarray) -> None:
        """Queue one (height, width, 3) uint8 frame (copied); thread-safe, never blocks."""
        copy = frame.copy()
        with self._lock:
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(copy)

    async def recv(self) -> av.VideoFrame:
        """The next frame, due at frame index / fps after the first call; pts in 1/90000 s."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        await asyncio.sleep(max(0.0, self._start + self._count / self.fps - now))
        with self._lock:
            if self._queue:
                self._last = self._queue.popleft()
        frame = av.VideoFrame.from_ndarray(self._last, format="rgb24")
        frame.pts = round(self._count * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self._count += 1
        return frame


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
