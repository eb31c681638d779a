"""Thread plumbing of the runtime: a bounded queue with a lossless or drop-oldest policy, and a frame buffer.

q = StageQueue(1, lossless=False)   # newest wins: a put into a full queue drops the oldest item, counted
q.put(item); item = q.get(0.1)       # None once closed and drained; TimeoutError after 0.1 s without items
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

T = TypeVar("T")


class QueueClosed(RuntimeError):
    """A lossless `put` found the queue closed (the engine is stopping)."""


class StageQueue(Generic[T]):
    """A bounded thread-safe FIFO between two runtime stages.

    `lossless=True` (files in --fast mode): `put` waits for room, so no work is ever dropped and the producer
    runs at the consumer's pace. `lossless=False` (live): `put` never blocks; a full queue drops its oldest
    item and counts it in `dropped` (stale work never piles up latency). `task_done` after each item and
    `wait_idle` let a producer wait until everything it put has been processed.
    """

    def __init__(self, maxsize: int, *, lossless: bool) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        self.maxsize, self.lossless = maxsize, lossless
        self.dropped = 0
        self._items: deque[T] = deque()
        self._unfinished = 0
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> bool:
        """Queue `item`; returns False when an older item was dropped to make room (lossy mode only)."""
        with self._cond:
            if self.lossless:
                self._cond.wait_for(lambda: self._closed or len(self._items) < self.maxsize)
            if self._closed:
                raise QueueClosed("the queue is closed")
            kept = True
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
                self._unfinished -= 1
                kept = False
            self._items.append(item)
            self._unfinished += 1
            self._cond.notify_all()
            return kept

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item; None when the queue is closed and empty; TimeoutError after `timeout` s of nothing."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError(f"nothing arrived for {timeout} s")
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def task_done(self) -> None:
        """The consumer finished one item it got."""
        with self._cond:
            self._unfinished = max(0, self._unfinished - 1)
            self._cond.notify_all()

    def wait_idle(self) -> None:
        """Block until every item put so far was got and marked done (or the queue was closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._unfinished == 0 or self._closed)

    def wait_below(self, size: int) -> None:
        """Block until fewer than `size` items are queued (or the queue was closed): backpressure for a producer."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or len(self._items) < size)

    def close(self) -> None:
        """Wake every waiter; items already queued are still handed out, new puts raise QueueClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class FrameBuffer:
    """The frames of an endless stream of (dim,) rows, addressed by absolute frame index.

    The owner says which old frames it no longer needs (`forget_before`); they are dropped in blocks, so memory
    stays bounded on calls of any length without a copy per frame. Not thread-safe: its owner locks.
    """

    def __init__(self, dim: int, dtype: type = np.float32) -> None:
        self.offset = 0  # absolute index of self.data[0]
        self.data: NDArray = np.zeros((0, dim), dtype=dtype)

    @property
    def end(self) -> int:
        """One past the newest frame's absolute index (= frames appended so far)."""
        return self.offset + len(self.data)

    def append(self, rows: NDArray) -> None:
        self.data = np.concatenate([self.data, np.asarray(rows, self.data.dtype).reshape(-1, self.data.shape[1])])

    def forget_before(self, frame: int) -> None:
        """Frames before `frame` will not be read again (dropped once they are at least half the buffer)."""
        drop = min(frame, self.end) - self.offset
        if drop >= 64 and drop * 2 >= len(self.data):
            self.data, self.offset = self.data[drop:].copy(), self.offset + drop

    def __getitem__(self, frame: int) -> NDArray:
        """Row of absolute frame `frame` (must still be kept)."""
        if not self.offset <= frame < self.end:
            raise IndexError(f"frame {frame} is not kept (frames {self.offset}..{self.end - 1} are)")
        return self.data[frame - self.offset]
