"""Many calls in one process: batched inference throughput, and how many sessions hold 25 fps with no deadline miss.

    .venv/bin/python benchmarks/multiroom.py                          # everything, in-process and Ray Serve
    .venv/bin/python benchmarks/multiroom.py --services in-process --kinds audio --seconds 60

Prints one JSON object:

- "throughput": per inference service and backend, windows per second for 16 sessions' windows (closed loop: each
  session sends its next window when the last came back) run three ways: "separate" (16 sessions, each with its
  own backend on its own thread: today's one-engine-per-room layout in one process), "sequential" (one backend,
  one window per call) and "batched" (the shared scheduler: one call of 16), with "batched_over_separate" and
  "batched_over_sequential". For Ray Serve, "overhead_ms_per_window": its batch of 16's median time against the
  in-process backend's, per window.
- "sessions": per service and kind (audio-only, video tracking), the most sessions that held 25 fps listener
  frames with no window dropped and no frame filled for --seconds ("held"), each session being what a room
  session costs minus the network: the shipped model through the shared scheduler (the server's own
  SessionManager), a speaker mp4 (640x480 H.264 + AAC, `reactdiff-trainer clip`) paced in real time and decoded,
  the face tracked (video kind), the avatar drawn at 640x480, converted and VP8-encoded at 30 fps as for one room
  subscriber. Sessions start a random part of a hop apart (their windows' phases differ, as calls do). Found with
  --probe-seconds runs stepping from the admission limit, then confirmed over --seconds. Beside it, the
  admission control's "predicted" limit from the costs measured at start.
- "machine" and the load average before and after, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from engine.backends import create_backend, window_shapes
from engine.model_dir import ModelDir, load_model_dir
from engine.models import default_model_dir
from engine.serving.admission import Capacity, CapacityConfig, Costs, LoadMeter, measure_costs
from engine.serving.scheduler import BatchRecord, BatchScheduler, SchedulerConfig
from engine.serving.service import BackendSettings, InferenceService, create_service
from engine.serving.sessions import SessionDefaults, SessionManager, SessionSpec
from engine.sources import FileSource
from renderer.sinks import Sink, to_i420, yuv420p_frame

REPO = Path(__file__).resolve().parents[1]
SIZE = (640, 480)
SESSIONS = 16


def machine() -> str:
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")]
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} cores, no GPU"


def window(model: ModelDir, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in window_shapes(model, 1).values()]
    arrays[2][:] = 1.0
    arrays[4][:] = (np.arange(model.window) < model.window - model.hop)[None]
    return arrays


def closed_loop(calls: list, seconds: float) -> float:
    """Windows per second when each of `calls` (one per session thread) is called again as soon as it returns."""
    counts = [0] * len(calls)
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            calls[i]()
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(calls))]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def batched(service: InferenceService, seconds: float) -> tuple[float, float]:
    """(windows/s, median seconds of a batch of 16) through the shared scheduler, 16 sessions in closed loop."""
    scheduler = BatchScheduler(service, SchedulerConfig(gather_s=0.5, max_batch=SESSIONS))
    records: list[BatchRecord] = []
    scheduler.observers.append(records.append)
    clients = [scheduler.client() for _ in range(SESSIONS)]
    arrays = [window(service.model, i) for i in range(SESSIONS)]
    rate = closed_loop([lambda c=c, a=a: c.run_window(*a) for c, a in zip(clients, arrays, strict=True)], seconds)
    scheduler.close()
    full = [r.run_s for r in records if r.rows == SESSIONS]
    return rate, float(np.median(full))


def throughput(service: InferenceService, backend: str, seconds: float) -> dict[str, Any]:
    model = service.model
    arrays = [window(model, i) for i in range(SESSIONS)]
    if service.kind.value == "in-process":
        backends = [create_backend(backend, model) for _ in range(SESSIONS)]
        separate = closed_loop([lambda b=b, a=a: b.run_window(*a) for b, a in zip(backends, arrays, strict=True)],
                               seconds)  # fmt: skip
        sequential = closed_loop([lambda: backends[0].run_window(*arrays[0])], seconds)
        for b in backends:
            b.close()
    else:  # 16 sessions each sending its own window to the serving engine, and one at a time
        separate = closed_loop([lambda a=a: service.run_batch(*a) for a in arrays], seconds)
        sequential = closed_loop([lambda: service.run_batch(*arrays[0])], seconds)
    rate, batch_s = batched(service, seconds)
    return {
        "service": service.kind.value, "backend": backend, "sessions": SESSIONS,
        "windows_per_s": {"separate": round(separate, 1), "sequential": round(sequential, 1),
                          "batched": round(rate, 1)},
        "batched_over_separate": round(rate / separate, 2), "batched_over_sequential": round(rate / sequential, 2),
        "batch_of_16_ms": round(batch_s * 1000, 2),
    }  # fmt: skip


class EncodingSink(Sink):
    """What one room subscriber costs: each avatar frame converted to yuv420p and VP8-encoded (then dropped)."""

    def __init__(self, *, width: int, height: int, fps: float = 30.0) -> None:
        super().__init__(width=width, height=height, fps=fps)
        from aiortc.codecs.vpx import Vp8Encoder

        self.encoder, self.frames = Vp8Encoder(), 0

    def _write(self, frame: np.ndarray, timestamp_s: float) -> None:
        video = yuv420p_frame(to_i420(frame))
        video.pts, video.time_base = self.frames * 3000, Fraction(1, 90_000)
        self.encoder.encode(video)
        self.frames += 1

    def _close(self) -> None:
        self.encoder = None


class FileCall:
    """A session's call without the network: the speaker clip paced in real time, the avatar encoded."""

    def __init__(self, clip: Path, start_delay_s: float) -> None:
        time.sleep(start_delay_s)  # calls start at any phase of each other's hops
        self.source = FileSource(clip, realtime=True)
        self.error = None

    def make_sink(self, width: int, height: int) -> Sink:
        return EncodingSink(width=width, height=height)

    def publish(self, emitted: Any) -> None:
        """No reactions channel here."""

    def set_stats_source(self, fn: Any) -> None:
        """No room page here."""

    def close(self) -> None:
        self.source.close()


def run_sessions(
    service: InferenceService, clip: Path, n: int, video: bool, seconds: float, delay_s: float | None
) -> dict[str, Any]:
    """n sessions for `seconds`: did every one hold 25 fps with no window dropped and no frame filled?"""
    model = service.model
    scheduler = BatchScheduler(service, SchedulerConfig())
    records: list[BatchRecord] = []
    scheduler.observers.append(records.append)
    unlimited = Costs({1: 0.0}, 0, 0.0, 0.0)  # admission is what is measured here, not applied
    capacity = Capacity(unlimited, CapacityConfig(max_sessions=1000), hop=model.hop, scheduler=scheduler.config)
    hop_s = model.hop / 25
    manager = SessionManager(model, scheduler, capacity, SessionDefaults(size=SIZE, playout_delay_s=delay_s),
                             open_call=lambda spec, size: FileCall(clip, random.uniform(0, hop_s)),
                             measure_load=False)  # fmt: skip
    sessions = [manager.create(SessionSpec(room="file", video=video, seed=i)) for i in range(n)]
    meter = LoadMeter(manager.missed, window_s=seconds)  # what the server's admission would see
    time.sleep(seconds)
    measured = meter.now()
    meter.close()
    figures, behind = [], 0
    for s in sessions:
        stats = s.engine.stats.to_json()
        fps = stats["frames"]["generated"] / max(stats["media_s"], 1e-9)
        # the frames of the window under way are not made yet: at most two hops behind the speaker
        behind = max(behind, round(stats["media_s"] * 25) - stats["frames"]["generated"])
        figures.append(
            (fps, stats["windows"]["dropped"], stats["frames"]["filled"], stats["engine_delay_ms"]["p50_ms"])
        )
        manager.stop(s.id)
    scheduler.close()
    missed = sum(f[1] for f in figures) + sum(f[2] for f in figures)
    return {
        "sessions": n, "held": missed == 0 and behind <= 2 * model.hop, "frames_behind_max": behind,
        "listener_fps_min": round(min(f[0] for f in figures), 2), "windows_dropped": sum(f[1] for f in figures),
        "frames_filled": sum(f[2] for f in figures), "batch_mean": round(float(np.mean([r.rows for r in records])), 2),
        "engine_delay_p50_ms": round(float(np.median([f[3] for f in figures if f[3] is not None])), 1),
        "cores_busy": {"machine": round(measured.machine_cores, 2), "this_process": round(measured.process_cores, 2)},
    }  # fmt: skip


def most_sessions(service: InferenceService, clip: Path, video: bool, start: int, probe_s: float, seconds: float,
                  delay_s: float | None, log: list) -> dict[str, Any]:  # fmt: skip
    """Step from `start` with short probes to the most sessions held, then confirm it over `seconds`."""
    n = max(1, start)
    first = run_sessions(service, clip, n, video, probe_s, delay_s)
    log.append(first)
    step = 1 if first["held"] else -1
    while (step < 0 and n > 1) or step > 0:
        result = run_sessions(service, clip, n + step, video, probe_s, delay_s)
        log.append(result)
        if result["held"] != first["held"]:
            n = n if step > 0 else n - 1
            break
        n += step
    while n >= 1:  # confirm over the full length; one fewer if it does not hold
        confirmed = run_sessions(service, clip, n, video, seconds, delay_s)
        log.append(confirmed)
        if confirmed["held"]:
            return confirmed
        n -= 1
    return {"sessions": 0, "held": False}


def speaker_clips(seconds: float) -> dict[str, Path]:
    """{"video": the speaker as a 640x480 mp4 (H.264 + AAC), "audio": its speech alone (16 kHz wav)}, cached."""
    clip = REPO / "runs" / "multiroom" / f"speaker_{int(seconds)}s_640x480.mp4"
    wav = clip.with_suffix(".wav")
    if not clip.exists():
        clip.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "trainer.cli", "clip", "--out", str(clip), "--seconds",
                        str(int(seconds)), "--size", "640x480", "--seed", "1"], check=True)  # fmt: skip
    if not wav.exists():
        with av.open(str(clip)) as src, av.open(str(wav), "w") as dst:
            stream = dst.add_stream("pcm_s16le", rate=16_000, layout="mono")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
            for frame in [*src.decode(audio=0), None]:
                for part in resampler.resample(frame):
                    dst.mux(stream.encode(part))
            dst.mux(stream.encode(None))
    return {"video": clip, "audio": wav}


def main() -> None:
    with contextlib.redirect_stdout(sys.stderr):  # Ray prints its shutdown on stdout: only the JSON goes there
        out = measure()
    print(json.dumps(out))


def measure() -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", nargs="+", default=["in-process", "ray"])
    p.add_argument("--backends", nargs="+", default=["onnxruntime", "torch-cpu"], help="for the throughput")
    p.add_argument("--kinds", nargs="+", default=["audio", "video"], choices=["audio", "video"])
    p.add_argument("--seconds", type=float, default=60.0, help="length of a confirming sessions run")
    p.add_argument("--probe-seconds", type=float, default=20.0, help="length of a probing sessions run")
    p.add_argument("--throughput-seconds", type=float, default=5.0)
    p.add_argument("--no-sessions", action="store_true")
    p.add_argument("--playout-delay-ms", type=float, default=500.0, help="the sessions' fixed input-to-display "
                   "delay (default 500, about the engine's first adaptive guess; 0: adaptive, which lets 1 %% of "
                   "frames be filled to keep the delay low)")  # fmt: skip
    args = p.parse_args()
    model = load_model_dir(default_model_dir())
    delay_s = args.playout_delay_ms / 1000 or None
    out: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg(), "model": "base",
                           "playout_delay_ms": args.playout_delay_ms or "adaptive", "throughput": [],
                           "sessions": []}  # fmt: skip
    clips = None if args.no_sessions else speaker_clips(max(args.seconds, args.probe_seconds) + 15)
    random.seed(0)
    for kind in args.services:
        for backend in args.backends if kind == "in-process" else ["onnxruntime"]:
            with create_service(kind, model, BackendSettings(backend)) as service:
                out["throughput"].append(throughput(service, backend, args.throughput_seconds))
                if backend != "onnxruntime" or clips is None:
                    continue
                costs = measure_costs(service, size=SIZE, video="video" in args.kinds)
                predicted = Capacity(costs, CapacityConfig(), hop=model.hop, scheduler=SchedulerConfig())
                for what in args.kinds:
                    limit = predicted.limits()[what]
                    before = [r["held"]["sessions"] for r in out["sessions"] if r["kind"] == what]
                    tried: list = []  # Ray starts from what held in-process
                    held = most_sessions(service, clips[what], what == "video", before[0] if before else limit,
                                         args.probe_seconds, args.seconds, delay_s, tried)  # fmt: skip
                    out["sessions"].append({"service": kind, "kind": what, "held": held, "predicted": limit,
                                            "runs": tried})  # fmt: skip
    ray = next((t for t in out["throughput"] if t["service"] == "ray"), None)
    local = next((t for t in out["throughput"] if t["service"] == "in-process" and t["backend"] == "onnxruntime"), None)
    if ray and local:
        out["ray_overhead_ms_per_window"] = round((ray["batch_of_16_ms"] - local["batch_of_16_ms"]) / SESSIONS, 3)
    out["load_after"] = os.getloadavg()
    return out


if __name__ == "__main__":
    main()
