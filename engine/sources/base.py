"""The source contract: timestamped speaker media, one interface for files, local devices and WebRTC tracks.

Every source yields `AudioChunk`s (16 kHz mono float32) and `VideoFrame`s (RGB) stamped with media time in
seconds from the start of the stream. Audio is the clock: a chunk's `t_start_s` counts the 16 kHz samples
delivered before it. `arrival_s` is `time.monotonic()` when the item became available, so the engine can
measure latency from arrival to output.

    with create_source(SourceKind.FILE, path="talk.mp4", realtime=True) as source:
        for item in source:                 # blocking; run it in a worker thread
            if isinstance(item, AudioChunk): features.push(item.samples)
            else: tracker.track(item.rgb, item.t_s)

From asyncio, `iterate_in_thread(source)` turns any source into an async iterator without blocking the loop.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

import av
import numpy as np
from numpy.typing import NDArray

from engine.features import SAMPLE_RATE


class SourceKind(Enum):
    """Where speaker media comes from."""

    FILE = "file"  # anything PyAV reads: mp4, webm, mkv, wav, ...
    AUDIO_DEVICE = "audio-device"  # a local input device through PortAudio (sounddevice)
    WEBRTC = "webrtc"  # aiortc MediaStreamTracks received from a room


class SourceError(RuntimeError):
    """A source cannot deliver media (missing/corrupt file, unknown device, device gone); the message says which."""


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """A run of speaker audio: (N,) float32 mono samples in [-1, 1] at 16 kHz."""

    samples: NDArray[np.float32]
    t_start_s: float
    """Media time of the first sample, seconds from the start of the stream."""
    arrival_s: float
    """time.monotonic() when the chunk became available."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def t_end_s(self) -> float:
        """Media time just after the last sample."""
        return self.t_start_s + self.duration_s


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One speaker video frame; `rgb` gives (H, W, 3) uint8.

    `image` is either that array or a decoded `av.VideoFrame`, converted to RGB on first use of `rgb` (in the
    consumer's thread, so a source's event loop or decode loop never pays for the colour conversion).
    """

    image: NDArray[np.uint8] | av.VideoFrame
    t_s: float
    """Media time of the frame, seconds from the start of the stream (the audio clock)."""
    arrival_s: float
    """time.monotonic() when the frame became available."""

    def __post_init__(self) -> None:
        if isinstance(self.image, np.ndarray):
            check_rgb(self.image, f"video frame at {self.t_s:.3f} s")

    @functools.cached_property
    def rgb(self) -> NDArray[np.uint8]:
        if isinstance(self.image, np.ndarray):
            return self.image
        return np.asarray(self.image.to_ndarray(format="rgb24"), dtype=np.uint8)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, without converting the frame."""
        if isinstance(self.image, np.ndarray):
            return self.image.shape[1], self.image.shape[0]
        return self.image.width, self.image.height


Media = AudioChunk | VideoFrame


def check_rgb(rgb: Any, what: str) -> NDArray[np.uint8]:
    """Check that `rgb` is an (H, W, 3) uint8 array; `what` names it in the error."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise ValueError(f"{what}: expected an (H, W, 3) uint8 RGB array, got shape {shape} and dtype {dtype}")
    return rgb


@dataclass
class SourceStats:
    """Counters a source keeps while it runs (read them any time; written by the source's own threads)."""

    audio_chunks: int = 0
    audio_samples: int = 0
    """16 kHz samples delivered."""
    video_frames: int = 0
    dropped: int = 0
    """Items pushed out of a full queue before the consumer took them."""
    overflows: int = 0
    """Blocks the device or driver reported as lost before they reached us."""
    format_changes: int = 0
    """Times the incoming audio changed sample rate, layout or sample format mid-stream."""


class Source(ABC):
    """Speaker media in media-time order.

    Contract for implementations: `__iter__` blocks and yields `AudioChunk | VideoFrame` until the stream
    ends (then returns) or fails (then raises `SourceError`); a source is iterated once. `close()` may be
    called from any thread, more than once, and makes a running iteration end soon. `has_audio` and
    `has_video` are known after construction.
    """

    kind: ClassVar[SourceKind]

    def __init__(self) -> None:
        self.stats = SourceStats()

    @property
    @abstractmethod
    def has_audio(self) -> bool:
        """Whether this source delivers audio chunks."""

    @property
    @abstractmethod
    def has_video(self) -> bool:
        """Whether this source delivers video frames."""

    @abstractmethod
    def __iter__(self) -> Iterator[Media]:
        """Blocking iterator over the media, in media-time order."""

    @abstractmethod
    def close(self) -> None:
        """Release the file, device or tracks; idempotent and thread-safe."""

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


SOURCES: dict[SourceKind, type[Source]] = {}

S = TypeVar("S", bound=type[Source])


def register_source(cls: S) -> S:
    """Class decorator: make `cls` the implementation of `cls.kind`."""
    SOURCES[cls.kind] = cls
    return cls


def create_source(kind: SourceKind, **options: Any) -> Source:
    """Build the source registered for `kind`; `options` are that class's keyword arguments."""
    return SOURCES[kind](**options)


async def iterate_in_thread(source: Source) -> AsyncIterator[Media]:
    """Iterate a blocking source from asyncio: each `next()` runs in a worker thread, the loop stays free."""
    items = iter(source)
    end = object()
    while (item := await asyncio.to_thread(next, items, end)) is not end:
        yield item  # type: ignore[misc]


T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A bounded thread-safe FIFO: `put` never blocks (a full queue drops its oldest item and counts it).

    `get` blocks until an item arrives, the queue is closed (returns None once drained) or `timeout`
    seconds pass (raises TimeoutError). Items must not be None.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[T] = deque()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, item: T) -> None:
        with self._ready:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> T | None:
        with self._ready:
            if not self._ready.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError(f"nothing arrived for {timeout} s")
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Wake every waiting `get`; items already queued are still handed out."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)


def run_with_timeout(fn: Callable[[], object], timeout_s: float, name: str) -> bool:
    """Run `fn` in a daemon thread and wait at most `timeout_s`; False when it is still running then.

    For driver calls that can block forever (stopping a PortAudio stream whose device hangs).
    """
    thread = threading.Thread(target=fn, name=name, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive()
