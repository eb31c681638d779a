"""The Prometheus exposition: what the scheduler's batches and the sessions' figures become, parsed back with
prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from engine.serving.metrics import ServeMetrics, SessionFigures
from engine.serving.scheduler import BatchRecord


def samples(metrics: ServeMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_batches_and_sessions_become_prometheus_metrics():
    figures = [
        SessionFigures("a", "running", 100, 2, 5, 0.42),
        SessionFigures("b", "ended", 50, 1, 0, None),
        SessionFigures("", "stopped", 10, 0, 3, None),
    ]
    metrics = ServeMetrics(sessions=lambda: figures, queue_depth=lambda: 3, limits={"audio": 9, "video": 4})
    metrics.observe_batch(BatchRecord(3, 4, (0.01, 0.02, 0.03), 0.05))
    metrics.observe_batch(BatchRecord(1, 1, (0.0,), 0.01))
    metrics.refused.inc()
    got = samples(metrics)
    assert got[("reactdiff_windows_total", ())] == 4 and got[("reactdiff_batches_total", ())] == 2
    assert got[("reactdiff_batch_size_sum", ())] == 4 and got[("reactdiff_batch_size_bucket", (("le", "2.0"),))] == 1
    assert got[("reactdiff_window_delay_seconds_count", ())] == 4
    assert got[("reactdiff_window_delay_seconds_bucket", (("le", "0.04"),))] == 1  # 0.01; not 0.06, 0.07, 0.08
    assert got[("reactdiff_window_delay_seconds_bucket", (("le", "0.1"),))] == 4
    assert got[("reactdiff_window_wait_seconds_sum", ())] == 0.06
    assert got[("reactdiff_scheduler_queue_depth", ())] == 3
    assert got[("reactdiff_sessions", (("state", "running"),))] == 1
    assert got[("reactdiff_sessions", (("state", "ended"),))] == 1
    assert got[("reactdiff_listener_frames_total", ())] == 160
    assert got[("reactdiff_deadline_misses_total", ())] == 3 and got[("reactdiff_frames_filled_total", ())] == 8
    assert got[("reactdiff_session_engine_delay_seconds", (("session", "a"),))] == 0.42
    assert got[("reactdiff_sessions_refused_total", ())] == 1
    assert got[("reactdiff_capacity_sessions", (("kind", "video"),))] == 4
