"""The server's metrics in the Prometheus text format (prometheus-client), on a registry of its own.

    metrics = ServeMetrics(sessions=manager.snapshot, queue_depth=lambda: scheduler.queue_depth,
                           limits=capacity.limits())
    scheduler.observers.append(metrics.observe_batch)
    body = metrics.exposition()              # GET /metrics

From the scheduler, as batches run: windows and batches (counters), batch sizes, how long windows waited for their
batch and the whole delay from submission to result, and each batched call's time (histograms). From the
sessions, read at each scrape (a custom collector, so nothing is counted twice): sessions by state, listener
frames made, windows that missed their deadline (dropped late, or replaced by a newer one before they ran),
frames filled because no window delivered them in time, and each running session's engine delay. Plus the
scheduler's queue depth, sessions refused by admission control and the admission limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.serving.scheduler import BatchRecord

BATCH_SIZES = (1, 2, 4, 8, 12, 16, 24, 32, 64)
DELAYS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


@dataclass(frozen=True)
class SessionFigures:
    """What the metrics read of one session at a scrape."""

    id: str
    state: str
    frames: int
    """Listener frames made by windows."""
    windows_missed: int
    """Windows dropped: late (could not be ready before shown) or stale (replaced before they ran)."""
    frames_filled: int
    engine_delay_s: float | None
    """The median, over the last 3 s of avatar frames, from input to frame written (None: nothing shown yet)."""


class SessionCollector(Collector):
    """Reads the sessions' figures at each scrape."""

    def __init__(self, sessions: Callable[[], Iterable[SessionFigures]]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        figures = list(self.sessions())
        states = GaugeMetricFamily("reactdiff_sessions", "Sessions by state", labels=["state"])
        for state in ("joining", "running", "ended"):
            states.add_metric([state], sum(f.state == state for f in figures))
        yield states
        for name, doc, value in (
            ("reactdiff_listener_frames", "Listener frames (25 fps) made by windows", lambda f: f.frames),
            ("reactdiff_deadline_misses", "Windows that missed their deadline (dropped late or stale)",
             lambda f: f.windows_missed),
            ("reactdiff_frames_filled", "Listener frames no window delivered in time (held and faded)",
             lambda f: f.frames_filled),
        ):  # fmt: skip
            yield CounterMetricFamily(name, doc, value=sum(value(f) for f in figures))
        delay = GaugeMetricFamily(
            "reactdiff_session_engine_delay_seconds", "Median input-to-avatar delay of each running session, last 3 s",
            labels=["session"],
        )  # fmt: skip
        for f in figures:
            if f.state == "running" and f.engine_delay_s is not None:
                delay.add_metric([f.id], f.engine_delay_s)
        yield delay


class ServeMetrics:
    """Every metric of one server."""

    def __init__(
        self, *, sessions: Callable[[], Iterable[SessionFigures]], queue_depth: Callable[[], int],
        limits: dict[str, int],
    ) -> None:  # fmt: skip
        self.registry = r = CollectorRegistry()
        self.windows = Counter("reactdiff_windows", "Windows run by the shared scheduler", registry=r)
        self.batches = Counter("reactdiff_batches", "Batched calls of the inference service", registry=r)
        self.batch_size = Histogram("reactdiff_batch_size", "Windows per batched call", buckets=BATCH_SIZES, registry=r)
        self.wait = Histogram(
            "reactdiff_window_wait_seconds", "From a window's submission to its batch's start (gathering, queueing)",
            buckets=DELAYS_S, registry=r,
        )  # fmt: skip
        self.delay = Histogram(
            "reactdiff_window_delay_seconds", "From a window's submission to its frames back in its session",
            buckets=DELAYS_S, registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "reactdiff_batch_seconds", "Time of one batched call", buckets=DELAYS_S, registry=r
        )
        self.refused = Counter("reactdiff_sessions_refused", "Sessions refused by admission control", registry=r)
        depth = Gauge("reactdiff_scheduler_queue_depth", "Windows waiting for a batch", registry=r)
        depth.set_function(lambda: float(queue_depth()))
        limit = Gauge("reactdiff_capacity_sessions", "Admission limit, each kind alone", ["kind"], registry=r)
        for kind, value in limits.items():
            limit.labels(kind).set(value)
        r.register(SessionCollector(sessions))

    def observe_batch(self, record: BatchRecord) -> None:
        """A scheduler observer: one batched call ran."""
        self.windows.inc(record.rows)
        self.batches.inc()
        self.batch_size.observe(record.rows)
        self.batch_seconds.observe(record.run_s)
        for wait in record.waits_s:
            self.wait.observe(wait)
            self.delay.observe(wait + record.run_s)

    def exposition(self) -> bytes:
        """The Prometheus text format of everything."""
        return generate_latest(self.registry)
