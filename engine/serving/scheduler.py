"""The shared inference scheduler: the windows due from every session, run as one batched call.

    scheduler = BatchScheduler(service, SchedulerConfig(gather_s=0.04))
    client = scheduler.client()                       # one per session
    model = WindowModel.from_model(service.model, client.run_window)    # what the session's StreamEngine runs
    ...
    client.close(); scheduler.close()

Each session's StreamEngine keeps its own inference thread, conditioning, noise (engine.windows.window_noise) and
seam join; only the backend call goes through here. That call blocks its session's thread until the window's
rows come back, so a session has at most one window waiting. The scheduler's thread takes the oldest waiting
window and gathers more until every open client has one waiting, `max_batch` rows are there, or `gather_s` has
passed since the oldest arrived (the deadline inside the hop: the latency a window may spend waiting for
others). It stacks them on the batch axis, pads the batch up to the next of `buckets` where the backend needs
static shapes (CUDA graphs, TensorRT plans), runs one call of the inference service and hands each session its
rows: the same frames it gets alone, since the graphs treat rows independently.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from engine.backends.base import check_window_inputs, listener_inputs
from engine.serving.service import InferenceService

log = logging.getLogger(__name__)

RESULT_TIMEOUT_S = 30.0  # a window not back by then is an error in its session (the service hangs), not a wait
# WindowFn arguments: audio, face, present, known, known_mask, noise (and style, expressiveness for a model with a
# style input: every row has them then, the null style where its session names no one)
Arrays = tuple[NDArray[np.float32], ...]
ARG_NAMES = ("audio", "face", "present", "known", "known_mask", "noise")


@dataclass(frozen=True)
class SchedulerConfig:
    """How the scheduler forms batches."""

    gather_s: float = 0.04
    """Longest a window waits for other sessions' windows to join its batch (added to its latency at most)."""
    max_batch: int = 16
    """Rows per batched call at most; more waiting windows go in the next call."""
    buckets: tuple[int, ...] = ()
    """Batch sizes the backend is called with: a batch is padded up to the next one (static shapes for CUDA
    graphs and TensorRT plans). Empty: every batch has its own size. The largest must be >= max_batch."""

    def __post_init__(self) -> None:
        if self.gather_s < 0 or self.max_batch < 1:
            raise ValueError(f"gather_s={self.gather_s}, max_batch={self.max_batch}: need gather_s >= 0 and "
                             "max_batch >= 1")  # fmt: skip
        if self.buckets and (list(self.buckets) != sorted(set(self.buckets)) or self.buckets[-1] < self.max_batch):
            raise ValueError(f"buckets={self.buckets}: give increasing sizes, the largest at least max_batch")

    def padded(self, rows: int) -> int:
        """The batch size a batch of `rows` windows is run at."""
        return self.buckets[bisect_left(self.buckets, rows)] if self.buckets else rows


STATIC_SHAPE_BACKENDS = ("torch-cuda", "tensorrt")  # capture a CUDA graph per batch size


def default_buckets(backend: str, max_batch: int) -> tuple[int, ...]:
    """Batch sizes to pad to on `backend`: powers of two up to max_batch (and max_batch) where each size costs a
    CUDA graph capture (torch-cuda, TensorRT), so a handful of graphs serve every batch; none elsewhere."""
    if backend not in STATIC_SHAPE_BACKENDS:
        return ()
    return tuple(sorted({2**i for i in range(max_batch.bit_length()) if 2**i < max_batch} | {max_batch}))


@dataclass
class _Request:
    """One session's window waiting for its batch."""

    arrays: Arrays
    rows: int
    submitted_s: float
    future: Future[NDArray[np.float32]] = field(default_factory=Future)


@dataclass(frozen=True)
class BatchRecord:
    """What one batched call did (for metrics): its windows, the size it ran at, and its times (seconds)."""

    rows: int
    padded: int
    waits_s: tuple[float, ...]
    """Per window: from submitted to the call's start (gathering and queueing)."""
    run_s: float
    """The service call."""


class SchedulerClient:
    """One session's handle: `run_window` is its engine.windows.WindowFn. `close()` when the session ends."""

    def __init__(self, scheduler: BatchScheduler) -> None:
        self._scheduler = scheduler
        self.closed = False

    def run_window(
        self, audio: NDArray[np.float32], face: NDArray[np.float32], present: NDArray[np.float32],
        known: NDArray[np.float32], known_mask: NDArray[np.float32], noise: NDArray[np.float32],
        style: NDArray[np.float32] | None = None, expressiveness: NDArray[np.float32] | None = None,
    ) -> NDArray[np.float32]:  # fmt: skip
        """Listener frames (B, W, 83) of this session's window(s), run in a batch with the other sessions'; the
        arguments are engine.windows.WindowFn's (style and expressiveness: who listens, None: no one in particular)."""
        arrays = (audio, face, present, known, known_mask, noise)
        return self._scheduler.submit(arrays, style, expressiveness).result(RESULT_TIMEOUT_S)

    def close(self) -> None:
        """The session will send no more windows (the scheduler stops waiting for it); safe twice."""
        if not self.closed:
            self.closed = True
            self._scheduler.release()


class BatchScheduler:
    """Gathers windows from its clients into batched calls of `service`, on one thread; `close()` safe twice."""

    def __init__(self, service: InferenceService, config: SchedulerConfig | None = None) -> None:
        self.service = service
        self.config = config or SchedulerConfig()
        self.observers: list[Callable[[BatchRecord], object]] = []  # told of every batch (metrics, benchmarks)
        self._pending: list[_Request] = []
        self._clients = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="reactdiff-scheduler", daemon=True)
        self._thread.start()

    # --- sessions' side ----------------------------------------------------------------------------------------------

    def client(self) -> SchedulerClient:
        """A handle for one more session."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the inference scheduler is closed")
            self._clients += 1
        return SchedulerClient(self)

    def release(self) -> None:
        """One session has ended (SchedulerClient.close)."""
        with self._cond:
            self._clients -= 1
            self._cond.notify_all()

    def submit(
        self, arrays: Arrays, style: NDArray[np.float32] | None = None,
        expressiveness: NDArray[np.float32] | None = None,
    ) -> Future[NDArray[np.float32]]:  # fmt: skip
        """Queue one session's window(s) (`arrays`: audio .. noise); checked here, so a bad window fails its own
        session, not the batch."""
        model = self.service.model
        who = listener_inputs(model, int(np.shape(arrays[0])[0]), style, expressiveness)
        checked = tuple(check_window_inputs(model, **dict(zip(ARG_NAMES, arrays, strict=True)), **who))
        request = _Request(checked, checked[0].shape[0], time.monotonic())
        with self._cond:
            if self._closed:
                raise RuntimeError("the inference scheduler is closed")
            self._pending.append(request)
            self._cond.notify_all()
        return request.future

    @property
    def queue_depth(self) -> int:
        """Windows waiting for a batch now."""
        with self._cond:
            return len(self._pending)

    @property
    def clients(self) -> int:
        with self._cond:
            return self._clients

    # --- the scheduler's thread ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while (batch := self._gather()) is not None:
            self._run(batch)

    def _gather(self) -> list[_Request] | None:
        """The next batch (oldest first), once it is full or its oldest window's gathering time is up."""
        cfg = self.config
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closed)
            if not self._pending:
                return None
            deadline = self._pending[0].submitted_s + cfg.gather_s
            self._cond.wait_for(
                lambda: self._closed or len(self._pending) >= self._clients or self._rows() >= cfg.max_batch,
                max(0.0, deadline - time.monotonic()),
            )
            batch: list[_Request] = []
            rows = 0
            while self._pending and (not batch or rows + self._pending[0].rows <= cfg.max_batch):
                request = self._pending.pop(0)
                batch.append(request)
                rows += request.rows
            return batch

    def _rows(self) -> int:
        return sum(r.rows for r in self._pending)

    def _run(self, batch: list[_Request]) -> None:
        rows = sum(r.rows for r in batch)
        padded = self.config.padded(rows)
        arrays = [stack_rows([r.arrays[i] for r in batch], padded) for i in range(len(batch[0].arrays))]
        start = time.monotonic()
        try:
            frames = self.service.run_batch(*arrays)
        except Exception as exc:  # every session in the batch gets the error (its engine run ends with it)
            log.warning("batch of %d windows failed: %r", rows, exc)
            for request in batch:
                request.future.set_exception(exc)
            return
        finished = time.monotonic()
        offset = 0
        for request in batch:
            request.future.set_result(frames[offset : offset + request.rows])
            offset += request.rows
        record = BatchRecord(rows, padded, tuple(start - r.submitted_s for r in batch), finished - start)
        for observe in self.observers:
            observe(record)

    def close(self) -> None:
        """Stop the thread; windows still waiting fail with RuntimeError. Does not close the service."""
        with self._cond:
            self._closed = True
            left, self._pending = self._pending, []
            self._cond.notify_all()
        for request in left:
            request.future.set_exception(RuntimeError("the inference scheduler was closed"))
        if self._thread is not threading.current_thread():
            self._thread.join()


def stack_rows(parts: list[NDArray[np.float32]], rows: int) -> NDArray[np.float32]:
    """Stack the parts on the batch axis, padded to `rows` by repeating the last row (its output is dropped)."""
    stacked = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if rows > len(stacked):
        stacked = np.concatenate([stacked, np.repeat(stacked[-1:], rows - len(stacked), axis=0)])
    return stacked
