"""A browser and the engine in a reactdiff-room on 127.0.0.1: join time, avatar fps received in the browser,
and end-to-end latency from a marked speaker event to the avatar frame reacting to it, back in the browser.

.venv/bin/python benchmarks/room.py     # prints {"join_s": ..., "fps_received": ..., "latency_ms": {"p50", "p95"}}

join_s: from the engine starting to join until the browser shows its video (signaling_join_s: until the
server welcomed it). The speaker is headless Chromium's fake camera and mic playing a synthetic clip with
a loud beep every 2 s (the marked events). To make "the frame that reacts" unambiguous, the engine runs a
probe model in place of ReactDiff: it turns the avatar's head and opens its jaw on frames whose audio energy
is a beep's, and costs no inference time (add the model's window time, benchmarks/window_latency.py).
In the page, the beep's onset is timed on the local mic track (Web Audio), the reaction on the received
avatar video (requestVideoFrameCallback and pixel change); both clocks are the browser's. The path measured:
browser capture -> Opus/RTP -> aiortc -> 16 kHz features -> window -> fixed playout delay
((hop + 1) frames + 150 ms) -> render -> VP8 -> browser decode.
Requires chromium, chromium-driver (scripts/install_system_deps.sh) and selenium.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import aioice.ice
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package (browser harness)

from engine.features import audio_features
from engine.rooms.session import RoomSession
from engine.runtime import StreamConfig, StreamEngine, WindowModel
from renderer.face import EMOTION_DIM, FACE_INDEX, neutral_face
from tests.e2e.harness import INBOUND_FPS, chromium, missing_tools, room_server, speaker_clip

WINDOW, HOP = 16, 2
EVENTS_S = 14.0  # how long the page times beeps and reactions

LATENCY_PROBE = """
const done = arguments[arguments.length - 1];
const seconds = arguments[0];
const video = document.querySelector('.tile.engine video');
const ctx = new AudioContext();
const analyser = ctx.createAnalyser();
analyser.fftSize = 256;
ctx.createMediaStreamSource(new MediaStream(window.reactdiffRoomLocal.getAudioTracks())).connect(analyser);
const buf = new Float32Array(analyser.fftSize);
const canvas = document.createElement('canvas');
canvas.width = 64; canvas.height = 64;
const g = canvas.getContext('2d', { willReadFrequently: true });
let quietSince = performance.now(), onset = null, baseline = null;
const latencies = [];
const audioTimer = setInterval(() => {
  analyser.getFloatTimeDomainData(buf);
  let sq = 0; for (const x of buf) sq += x * x;
  const loud = Math.sqrt(sq / buf.length) > 0.25;
  const now = performance.now();
  if (!loud) { if (onset === null) quietSince = Math.min(quietSince, now); return; }
  if (onset === null && now - quietSince > 800) { onset = now; baseline = null; }
  quietSince = Infinity;
}, 2);
function pixels() { g.drawImage(video, 0, 0, 64, 64); return g.getImageData(0, 0, 64, 64).data; }
function onFrame(now) {
  const px = pixels();
  if (onset !== null) {
    if (baseline === null) baseline = px;
    else {
      let diff = 0; for (let i = 0; i < px.length; i += 4) diff += Math.abs(px[i + 1] - baseline[i + 1]);
      if (diff / (px.length / 4) > 6) { latencies.push(now - onset); onset = null; quietSince = Infinity; }
      else if (now - onset > 3000) { onset = null; }
    }
  }
  if (onset === null && quietSince === Infinity) quietSince = performance.now();
  video.requestVideoFrameCallback(onFrame);
}
video.requestVideoFrameCallback(onFrame);
setTimeout(() => { clearInterval(audioTimer); ctx.close(); done(latencies); }, seconds * 1000);
"""


def beep_threshold(wav: Path) -> float:
    """Midway between the log energies (feature columns 40:44) of the clip's quiet talk and of its beeps."""
    import wave

    with wave.open(str(wav)) as f:
        x = np.frombuffer(f.readframes(f.getnframes()), np.int16).astype(np.float32) / 32768
    energy = audio_features(x[::3].copy())[:, 40:44].mean(axis=1)  # 48 kHz -> 16 kHz (the tone is 440 Hz)
    return float((np.percentile(energy, 10) + np.percentile(energy, 95)) / 2)


def probe_model(threshold: float) -> WindowModel:
    """A WindowModel that reacts instantly: head turned and jaw open on loud frames, neutral otherwise."""
    neutral = np.concatenate([neutral_face(), np.zeros(EMOTION_DIM, np.float32)])

    def run_window(audio, face, present, known, known_mask, noise):  # (1, W, 57) ... -> (1, W, 83)
        loud = audio[0, :, 40:44].mean(axis=1) > threshold
        frames = np.tile(neutral, (audio.shape[1], 1))
        frames[loud, FACE_INDEX["jawOpen"]] = 1.0
        frames[loud, FACE_INDEX["yaw"]] = 0.6
        return frames[None].astype(np.float32)

    return WindowModel(run_window, WINDOW, HOP, (4, 8), len(neutral), neutral)


def main() -> int:
    problem = missing_tools()
    if problem:
        print(f"benchmarks/room.py: {problem}", file=sys.stderr)
        return 2
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    with tempfile.TemporaryDirectory() as tmp:
        y4m, wav = speaker_clip(Path(tmp), seconds=6.0)
        with room_server() as url, chromium(y4m, wav) as driver:
            driver.set_script_timeout(EVENTS_S + 30)
            driver.get(url + "&name=speaker")
            while not driver.execute_script("return window.reactdiffRoom && window.reactdiffRoom.id"):
                time.sleep(0.05)
            driver.execute_script("window.reactdiffRoomLocal = document.querySelector('#tile-self video').srcObject")
            session = RoomSession(url, size=(256, 256))
            join_start = time.monotonic()
            signaling_s = session.start()
            config = StreamConfig(realtime=True, live_sink=True, size=(256, 256))
            engine = StreamEngine(probe_model(beep_threshold(wav)), session.source, make_sink=session.make_sink,
                                  config=config, on_emitted=session.publish)  # fmt: skip
            runner = threading.Thread(target=engine.run, name="bench-engine")
            runner.start()
            try:
                while not driver.execute_script("const v = document.querySelector('.tile.engine video');"
                                                "return v && v.videoWidth > 0"):  # fmt: skip
                    time.sleep(0.01)
                join_s = time.monotonic() - join_start
                time.sleep(1.0)
                fps = driver.execute_async_script(INBOUND_FPS, 5)
                latencies = driver.execute_async_script(LATENCY_PROBE, EVENTS_S)
            finally:
                engine.close()
                runner.join(10)
                session.close()
    ms = np.asarray(latencies, np.float64)
    latency = {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))} if ms.size else None
    result = {
        "join_s": round(join_s, 3), "signaling_join_s": round(signaling_s, 3), "fps_received": round(float(fps), 1),
        "latency_ms": latency, "latency_events": int(ms.size), "playout_delay_ms": config.delay_s(HOP) * 1000,
    }  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
