"""A real browser and the engine (the shipped model) in a reactdiff-room on 127.0.0.1: join time, avatar fps in
the browser, and the pipeline delay from the browser's capture to the browser's display, measured, per stage.

.venv/bin/python benchmarks/room.py                  # 60 s live, the engine's defaults
.venv/bin/python benchmarks/room.py --seconds 30 --hop 8 --playout-delay-ms 510 --size 256x256

The speaker is headless Chromium's fake camera and mic playing a synthetic clip (tests/e2e/harness.py) whose
frames carry their index in a barcode (engine.runtime.probe); the engine runs in this process as
`reactdiff-engine --room` does (the shipped model, MediaPipe tracking, the avatar at the room's size) with the
delay probe on, so every avatar frame carries the index of the newest speaker frame it depended on. The room page
reads both barcodes from decoded pixels (room.js) and times them on its own clock: capture (the camera frame's
captureTime) to display (the avatar frame's expectedDisplayTime). That is `delay_ms`; `page_estimate_ms` is what
the page estimates without the barcodes (room.js: the engine's part plus its own WebRTC stats), once a second.
The engine's own log of each speaker frame, window and avatar frame gives the stages in between (`stages_ms`),
joined by index and tick, on one clock (the page's performance.now() is mapped to time.monotonic() by the
smallest-round-trip reading):

    in           capture -> the engine's source hands the frame out: `in_network` (Chromium's capture, encode and
                 pacing, the network, up to the frame leaving the engine's jitter buffer complete) and `in_receive`
                 (aiortc's decoder, the room's relay, the source's queue)
    tracking     -> its face is in the speaker timeline (the tracker's queue and MediaPipe)
    window_wait  -> the window that reads it is cut (its last audio frame arrives)
    queue        -> the inference worker starts it
    inference    -> its frames are in the listener timeline
    playout      -> the player starts drawing the avatar frame (the playout delay's wait)
    render       -> the frame is queued for the encoder
    out          -> it is displayed: `send` (the track's queue, aiortc's encoder, the network, up to the last
                 packet's receiveTime) and `browser` (Chromium's jitter buffer, decoder and compositor)

Per stage p50/p95 over the avatar frames; they add up frame by frame (stage medians do not add up to the total's).
`windows` counts what the engine dropped and filled over the measured span only; `load` is os.getloadavg() at the
start and end (other jobs share the machine). Requires chromium, chromium-driver and selenium.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
from aiortc.jitterbuffer import JitterFrame

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package (browser harness)

from engine.backends import create_backend
from engine.models import DEFAULT_MODEL_DIR
from engine.rooms.jitter import LowDelayJitterBuffer
from engine.rooms.session import RoomSession, stats_summary
from engine.rooms.switch import RelayVideoTrack
from engine.runtime import StreamConfig, StreamEngine, WindowModel
from engine.runtime.probe import TICK_MOD, DelayProbe, FrameRecord
from engine.tracker import FaceTracker
from tests.e2e.harness import INBOUND_FPS, chromium, missing_tools, room_server, speaker_clip, wait_for

CLIP_S = 24.0  # the speaker clip Chromium loops (indices repeat every 600 frames; joins take the latest)
WARMUP_S = 4.0  # after the avatar's first frame, before measuring
STAGES = ("in", "tracking", "window_wait", "queue", "inference", "playout", "render", "out")
PARTS = ("in_network", "in_receive", "send", "browser")  # in and out, each in two

# The page's RTP counters: Chromium's encoder and pacer for its camera, its jitter buffer and decoder for the avatar.
PAGE_RTP = """
const done = arguments[arguments.length - 1];
const peer = Object.values(window.reactdiffRoom.peers).find((p) => p.role === 'engine');
peer.pc.getStats().then((stats) => {
  const out = {};
  stats.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.outbound = s;
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.inbound = s;
    if (s.type === 'codec') out[s.id] = s.mimeType;
  });
  done(JSON.parse(JSON.stringify(out)));
});
"""


def page_clock(driver: Any, tries: int = 15) -> float:
    """Milliseconds to add to time.monotonic() * 1000 to get the page's performance.now() (best of `tries`)."""
    best = (np.inf, 0.0)
    for _ in range(tries):
        before = time.monotonic()
        page_ms = driver.execute_script("return performance.now()")
        after = time.monotonic()
        best = min(best, (after - before, page_ms - (before + after) / 2 * 1000))
    return best[1]


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "mean": round(float(np.mean(values)), 1)}


class ReceiveLog:
    """When each speaker video frame left the engine's jitter buffer complete, and when the room's relay had it
    decoded: hooks on engine.rooms.jitter.LowDelayJitterBuffer and engine.rooms.switch.RelayVideoTrack for the
    run. aiortc hands the decoder a frame's RTP timestamp less the first frame's (its TimestampMapper), which is
    the decoded frame's pts until the relay restamps it."""

    def __init__(self) -> None:
        self.released: dict[int, float] = {}  # raw RTP timestamp -> time.monotonic()
        self.first_raw: int | None = None
        self.relayed: list[tuple[float, int]] = []  # (time.monotonic(), raw RTP timestamp), in order

    @contextlib.contextmanager
    def installed(self) -> Iterator[ReceiveLog]:
        release, put = LowDelayJitterBuffer._remove_frame, RelayVideoTrack.put

        def logged_release(buffer: LowDelayJitterBuffer, sequence_number: int) -> JitterFrame | None:
            frame = release(buffer, sequence_number)
            if frame is not None and buffer._is_video:
                self.first_raw = frame.timestamp if self.first_raw is None else self.first_raw
                self.released[frame.timestamp] = time.monotonic()
            return frame

        def logged_put(relay: RelayVideoTrack, frame: Any) -> None:
            if isinstance(frame, av.VideoFrame) and frame.pts is not None and self.first_raw is not None:
                self.relayed.append((time.monotonic(), (int(frame.pts) + self.first_raw) % (1 << 32)))
            put(relay, frame)

        LowDelayJitterBuffer._remove_frame = logged_release  # type: ignore[method-assign]
        RelayVideoTrack.put = logged_put  # type: ignore[method-assign]
        try:
            yield self
        finally:
            LowDelayJitterBuffer._remove_frame = release  # type: ignore[method-assign]
            RelayVideoTrack.put = put  # type: ignore[method-assign]

    def released_before(self, arrival_s: float) -> float | None:
        """When the frame the engine's source handed out at `arrival_s` left the jitter buffer (None: unknown)."""
        i = bisect.bisect_right(self.relayed, (arrival_s, 1 << 33)) - 1
        return self.released.get(self.relayed[i][1]) if i >= 0 else None


def stage_table(
    samples: list[dict[str, Any]], probe: DelayProbe, received: ReceiveLog, offset_ms: float
) -> dict[str, Any]:
    """Each avatar frame the page measured, joined to the engine's records of it: per-stage durations (ms)."""
    speaker, windows, frames = probe.snapshot()
    ms = lambda s: s * 1000 + offset_ms  # noqa: E731  (time.monotonic() -> the page's clock)
    by_code: dict[tuple[int, int], list[FrameRecord]] = defaultdict(list)
    for f in frames:
        by_code[(f.tag, f.tick % TICK_MOD)].append(f)
    window_of = {w.k: w for w in windows}
    arrivals: dict[int, list[tuple[float, float]]] = defaultdict(list)  # tag -> [(tracked, arrival)] in order
    for s in speaker:
        arrivals[s.tag].append((s.tracked_s, s.arrival_s))
    stages: dict[str, list[float]] = {k: [] for k in (*STAGES, *PARTS)}
    joined = 0
    for sample in samples:
        candidates = [
            f for f in by_code.get((sample["index"], sample["tick"]), []) if ms(f.written_s) <= sample["display"]
        ]
        if not candidates or candidates[-1].window not in window_of:
            continue
        frame, window = candidates[-1], window_of[candidates[-1].window]
        seen = arrivals.get(frame.tag, [])
        i = bisect.bisect_right(seen, (window.cut_s, np.inf)) - 1  # the latest one tracked before the cut
        if i < 0:
            continue
        tracked, arrival = seen[i]
        times = [sample["capture"], ms(arrival), ms(tracked), ms(window.cut_s), ms(window.start_s),
                 ms(window.ready_s), ms(frame.render_s), ms(frame.written_s), sample["display"]]  # fmt: skip
        for name, a, b in zip(STAGES, times, times[1:], strict=False):
            stages[name].append(b - a)
        if sample["received"] is not None:
            stages["send"].append(sample["received"] - ms(frame.written_s))
            stages["browser"].append(sample["display"] - sample["received"])
        released = received.released_before(arrival)
        if released is not None:
            stages["in_network"].append(ms(released) - sample["capture"])
            stages["in_receive"].append(ms(arrival) - ms(released))
        joined += 1
    return {"frames_joined": joined, **{k: percentiles(v) for k, v in stages.items()}}


def page_rtp(driver: Any) -> dict[str, Any]:
    """Means per frame of the page's own encoder, pacer, jitter buffer and decoder (ms), and the codecs used."""
    stats = driver.execute_async_script(PAGE_RTP)
    out, inbound = stats.get("outbound", {}), stats.get("inbound", {})
    per = lambda total, count: round(1000 * total / count, 2) if count else None  # noqa: E731
    return {
        "camera_encode_ms": per(out.get("totalEncodeTime", 0), out.get("framesEncoded", 0)),
        "camera_pacer_ms": per(out.get("totalPacketSendDelay", 0), out.get("packetsSent", 0)),
        "camera_codec": stats.get(out.get("codecId"), None),
        "camera_size": [out.get("frameWidth"), out.get("frameHeight")],
        "avatar_jitter_buffer_ms": per(inbound.get("jitterBufferDelay", 0), inbound.get("jitterBufferEmittedCount", 0)),
        "avatar_decode_ms": per(inbound.get("totalDecodeTime", 0), inbound.get("framesDecoded", 0)),
        "avatar_codec": stats.get(inbound.get("codecId"), None),
    }


def window_counts(engine: StreamEngine) -> dict[str, int]:
    """The engine's counters now (the measured span's are the differences); `ticks`: playout delays recorded."""
    with engine.stats.lock:
        return {"run": engine.stats.windows_run, "dropped_stale": engine.stats.windows_dropped_stale,
                "dropped_late": engine.stats.windows_dropped_late, "filled": engine.listener.filled,
                "generated": engine.stats.frames_generated, "ticks": len(engine.stats.playout_delays_s)}  # fmt: skip


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    y4m, wav = speaker_clip(folder, seconds=CLIP_S, probe=True)
    backend = create_backend(args.backend, args.model)
    tracker = FaceTracker()
    try:
        with ReceiveLog().installed() as received, room_server() as url, chromium(y4m, wav) as driver:
            driver.set_script_timeout(args.seconds + 60)
            driver.get(url + "&name=speaker")
            wait_for(driver, "return window.reactdiffRoom && window.reactdiffRoom.id")
            session = RoomSession(url, size=args.size)
            join_start = time.monotonic()
            signaling_s = session.start()
            config = StreamConfig(
                realtime=True, live_sink=True, size=args.size, probe=True, hop=args.hop,
                playout_delay_s=None if args.playout_delay_ms is None else args.playout_delay_ms / 1000,
            )  # fmt: skip
            engine = StreamEngine(WindowModel.from_backend(backend), session.source, make_sink=session.make_sink,
                                  tracker=tracker, config=config, on_emitted=session.publish)  # fmt: skip
            session.set_stats_source(lambda: stats_summary(engine.stats))
            assert engine.probe is not None
            runner = threading.Thread(target=engine.run, name="bench-engine")
            runner.start()
            try:
                wait_for(driver, "const v = document.querySelector('.tile.engine video'); return v && v.videoWidth > 0")
                join_s = time.monotonic() - join_start
                time.sleep(WARMUP_S)
                before, load_start = window_counts(engine), os.getloadavg()
                offset_ms = page_clock(driver)
                span = driver.execute_script("return performance.now()")
                fps = driver.execute_async_script(INBOUND_FPS, args.seconds)
                span = (span, driver.execute_script("return performance.now()"))
                after, load_end = window_counts(engine), os.getloadavg()
                drift_ms = page_clock(driver) - offset_ms
                samples = driver.execute_script("return window.reactdiffRoom.delay.samples")
                estimates = driver.execute_script("return window.reactdiffRoom.delay.estimates")
                rtp = page_rtp(driver)
                page_stats = driver.execute_script("return Object.values(window.reactdiffRoom.stats)[0] || null")
            finally:
                engine.close()
                runner.join(10)
                session.close()
    finally:
        tracker.close()
        backend.close()
    measured = [s for s in samples if span[0] <= s["display"] <= span[1]]
    delays = [s["delay"] for s in measured]
    playout = np.asarray(engine.stats.playout_delays_s[before["ticks"] : after["ticks"]]) * 1000
    return {
        "join_s": round(join_s, 3), "signaling_join_s": round(signaling_s, 3), "fps_received": round(float(fps), 1),
        "delay_ms": percentiles(delays) | {"frames": len(delays), "seconds": round((span[1] - span[0]) / 1000, 1)}
        if delays else None,
        "stages_ms": stage_table(measured, engine.probe, received, offset_ms),
        "page_estimate_ms": percentiles([e["ms"] for e in estimates if span[0] <= e["at"] <= span[1]]),
        "windows": {k: after[k] - before[k] for k in after if k != "ticks"},
        "playout_delay_ms": {"first": round(float(playout[0]), 1), "p50": round(float(np.median(playout)), 1),
                             "min": round(float(playout.min()), 1), "max": round(float(playout.max()), 1)},
        "page_rtp": rtp, "page_stats": page_stats, "clock_drift_ms": round(drift_ms, 2),
        "engine": {"hop": engine.hop, "backend": backend.name, "model": str(args.model), "size": list(args.size)},
        "load": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in load_end]},
    }  # fmt: skip


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured span (default 60)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: shipped)")
    parser.add_argument("--backend", default="auto", help="inference backend (default auto)")
    parser.add_argument("--hop", type=int, help="frames between windows (default: the engine's)")
    parser.add_argument("--playout-delay-ms", type=float, help="a fixed playout delay (default: the engine's adaptive)")
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="avatar WxH (default 640x480, a room's)")
    args = parser.parse_args()
    problem = missing_tools()
    if problem:
        print(f"benchmarks/room.py: {problem}", file=sys.stderr)
        return 2
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args, Path(tmp))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
