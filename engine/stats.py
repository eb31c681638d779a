"""What a streaming run measured: latency per listener frame, drops, fills, throughput; the JSON and the status line.

Latency of a listener frame = (wall time its window's result was ready) - (arrival time of the newest speaker
input that window read: the audio chunk that completed its last feature frame, or the newest tracked video
frame in it). How arrival and ready times are taken is the run's timing policy (`engine.runtime.timing`):

- `--realtime` and live devices: `arrival_s` is `time.monotonic()` when the source handed the item out (a
  paced file source holds each item back until its media time has passed); ready is `time.monotonic()` when
  the backend returned. Queueing, tracking and inference are all inside the number.
- `--fast` (files as fast as possible): arrival is synthetic, media time mapped to the wall clock as if the
  file were played in real time from the run's start, and so is the ready time: a simulated single worker
  starts a window at max(its newest input's arrival, the previous window's simulated end) and takes the
  inference time it really took. The number is what that hardware would give in real time with inference as
  the only stage, not a measurement of this run's queues.
"""

from __future__ import annotations

import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
from numpy.typing import ArrayLike


def latency_summary(latencies_s: ArrayLike) -> dict[str, float | int | None]:
    """{"frames", "p50_ms", "p95_ms", "max_ms"} of per-frame latencies in seconds (None when there are none)."""
    values = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    if values.size == 0:
        return {"frames": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"frames": int(values.size), "p50_ms": float(p50), "p95_ms": float(p95), "max_ms": float(values.max())}


def delay_summary(delays_s: ArrayLike) -> dict[str, float] | None:
    """{"first_ms", "p50_ms", "min_ms", "max_ms", "last_ms"} of the playout delays in use (None: none was)."""
    values = np.asarray(delays_s, dtype=np.float64) * 1000.0
    if values.size == 0:
        return None
    return {"first_ms": float(values[0]), "p50_ms": float(np.median(values)), "min_ms": float(values.min()),
            "max_ms": float(values.max()), "last_ms": float(values[-1])}  # fmt: skip


@dataclass
class StreamStats:
    """Counters of one streaming run; the engine's threads write them under `lock`, anyone may read them."""

    mode: str = "fast"
    """"fast" (lossless, as fast as possible) or "realtime" (live policies: late work is dropped)."""
    media_s: float = 0.0
    """Seconds of speaker media consumed (audio clock)."""
    wall_s: float = 0.0
    """Seconds from the run's start to its end (or to now, while running)."""
    inference_s: float = 0.0
    """Seconds the backend spent on windows."""
    windows_run: int = 0
    windows_dropped_stale: int = 0
    """Windows replaced in the size-1 queue by a newer one before the worker took them."""
    windows_dropped_late: int = 0
    """Windows the worker skipped because their frames could not be ready before they are shown."""
    frames_generated: int = 0
    """Listener frames (25 fps) that came from a window."""
    frames_filled: int = 0
    """Listener frames no window produced in time, filled by holding the last frame and decaying to neutral."""
    output_frames: int = 0
    """Rendered frames (30 fps) sent to the sink."""
    output_skipped: int = 0
    """Output ticks the renderer missed because it fell behind (realtime only)."""
    video_frames: int = 0
    tracked_frames: int = 0
    tracker_dropped: int = 0
    """Video frames replaced by a newer one before the tracker took them (realtime only)."""
    tracker_s: float = 0.0
    """Seconds the tracker spent on frames."""
    audio_dropped: int = 0
    """Speaker audio chunks dropped before the output file's audio track got them (their queue was full)."""
    latencies_s: array[float] = field(default_factory=lambda: array("d"))
    """Per listener frame: input arrival to frame ready (8 bytes each: 0.7 MB for an hour of call)."""
    playout_delays_s: array[float] = field(default_factory=lambda: array("d"))
    """The live playout delay at every output tick (engine.runtime.timing.AdaptiveDelay)."""
    delays_s: array[float] = field(default_factory=lambda: array("d"))
    """Per avatar frame shown by the live playout: the arrival of the newest speaker input it depended on to the
    frame written to the sink (the engine's part of the delay a viewer sees; 0.9 MB for an hour at 30 fps)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def windows_dropped(self) -> int:
        return self.windows_dropped_stale + self.windows_dropped_late

    def to_json(self) -> dict[str, Any]:
        """The stats file: latency percentiles, drops, tracker fps and real-time factors."""
        with self.lock:
            latencies, delays, playout = list(self.latencies_s), list(self.delays_s), list(self.playout_delays_s)
            media = max(self.media_s, 1e-9)
            return {
                "mode": self.mode,
                "media_s": self.media_s,
                "wall_s": self.wall_s,
                "rtf": self.wall_s / media,
                "inference_rtf": self.inference_s / media,
                "latency_ms": latency_summary(latencies),
                "engine_delay_ms": latency_summary(delays),
                "playout_delay_ms": delay_summary(playout),
                "windows": {
                    "run": self.windows_run,
                    "dropped": self.windows_dropped,
                    "dropped_stale": self.windows_dropped_stale,
                    "dropped_late": self.windows_dropped_late,
                },
                "frames": {
                    "generated": self.frames_generated,
                    "filled": self.frames_filled,
                    "output": self.output_frames,
                    "output_skipped": self.output_skipped,
                },
                "audio": {"dropped_chunks": self.audio_dropped},
                "tracker": {
                    "video_frames": self.video_frames,
                    "tracked": self.tracked_frames,
                    "dropped": self.tracker_dropped,
                    "fps": self.tracked_frames / self.tracker_s if self.tracker_s > 0 else None,
                    "fps_wall": self.tracked_frames / self.wall_s if self.wall_s > 0 else None,
                },
            }

    def status(self) -> str:
        """One short line for the terminal: media time, output fps, the delay (live: the engine's part of what a
        viewer sees, the median of the last 3 s of frames; files: the compute latency p95), drops and fills."""
        with self.lock:
            delays, recent = self.delays_s[-90:], self.latencies_s[-50:]
            fps = self.output_frames / self.wall_s if self.wall_s > 0 else 0.0
            media, drops, fills = self.media_s, self.windows_dropped, self.frames_filled
        if delays:
            shown = f"delay {np.median(delays) * 1000:5.0f} ms"
        else:
            shown = f"latency p95 {np.percentile(recent, 95) * 1000:5.0f} ms" if recent else "latency p95     - ms"
        return f"media {media:7.1f} s | out {fps:5.1f} fps | {shown} | dropped {drops} | filled {fills}"


class StatusLine:
    """A single self-updating line on a terminal stream (stderr by default); `update()` at most every `interval_s`."""

    def __init__(self, stream: TextIO | None = None, *, interval_s: float = 0.5, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.interval_s, self.enabled = interval_s, enabled
        self._last = -float("inf")
        self._width = 0

    def update(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self.interval_s):
            return
        self._last = now
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """End the line (the last status stays visible)."""
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
