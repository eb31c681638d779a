"""Shared by the browser end-to-end test and benchmarks/room.py: a synthetic speaker clip (y4m + wav) for
Chromium's fake camera and mic, `reactdiff-room` as a subprocess, headless Chromium through chromedriver
(selenium), the engine (`reactdiff-engine --room`) in a thread of this process, and page-side probes.

Every socket is on 127.0.0.1: the room server listens there, aiortc gathers only 127.0.0.1 host candidates
(`loopback_ice`), and Chromium may use loopback for WebRTC.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from engine.runtime.probe import ProbeCode, draw_code
from renderer.face import BLENDSHAPE_INDEX, neutral_face
from renderer.vector import VectorAvatar

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BEEP_EVERY_S = 2.0  # the clip's marked speaker events: a loud beep and a wide-open mouth every 2 s
BEEP_S = 0.4


def missing_tools() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install selenium)"
    for tool in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(tool) is None:
            return f"{tool} is missing (scripts/install_system_deps.sh installs chromium and chromium-driver)"
    return None


def speaker_clip(folder: Path, seconds: float = 6.0, fps: int = 25, *, probe: bool = False) -> tuple[Path, Path]:
    """(clip.y4m, clip.wav): a rendered speaker face whose mouth opens with each beep (events every 2 s).

    Between beeps the speaker 'talks' quietly (a soft tone with a syllable envelope, the jaw following it).
    With `probe`, frame k carries k in the delay probe's barcode along its top edge (engine.runtime.probe).
    """
    avatar = VectorAvatar(width=320, height=240)
    wav, y4m = folder / "clip.wav", folder / "clip.y4m"
    rate = 48_000
    t = np.arange(int(seconds * rate)) / rate
    phase = t % BEEP_EVERY_S
    beep = phase < BEEP_S
    talk = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    envelope = np.where(beep, 0.8, 0.08 * talk)
    audio = (envelope * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.tobytes())
    with av.open(str(y4m), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for k in range(int(seconds * fps)):
            face = neutral_face()
            tk = k / fps
            open_mouth = 0.9 if tk % BEEP_EVERY_S < BEEP_S else 0.25 * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * tk))
            face[BLENDSHAPE_INDEX["jawOpen"]] = open_mouth
            rgb = avatar.draw(face).copy()
            if probe:
                draw_code(rgb, ProbeCode(k))
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return y4m, wav


@contextlib.contextmanager
def room_server() -> Iterator[str]:
    """`reactdiff-room --port 0` on 127.0.0.1 as a subprocess; yields the room URL it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.room_server", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.match(r"room: (\S+)", line)
        if match is None:
            error = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"reactdiff-room printed {line!r}; stderr: {error}")
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


@contextlib.contextmanager
def chromium(y4m: Path, wav: Path, *, loopback: bool = True) -> Iterator[Any]:
    """Headless Chromium (selenium WebDriver) with a fake camera and mic playing the clip. With `loopback`,
    WebRTC may use 127.0.0.1 (tests on the host); without, it gathers only the machine's other addresses (the
    one address of a test's network namespace, tests/netns.py)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="reactdiff-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
        "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
        *(["--allow-loopback-in-peer-connection"] if loopback else []),
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class EngineThread(threading.Thread):
    """`reactdiff-engine --room URL ...` (engine.cli.main) in a thread; `code` is its exit status."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(name="test-engine-cli", daemon=True)
        self.argv, self.code = argv, None

    def run(self) -> None:
        from engine.cli import main

        self.code = main(self.argv)


def wait_for(driver: Any, script: str, timeout_s: float = 20.0) -> Any:
    """The first truthy value `script` returns in the page, polled every 0.1 s; AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"the page never satisfied: {script}")


# Page-side probes (JavaScript run in the room page).
AVATAR_VIDEO = "document.querySelector('.tile.engine video')"

PROBE_FRAMES = f"""
const done = arguments[arguments.length - 1];
const video = {AVATAR_VIDEO};
if (!video || !video.videoWidth) {{ done(null); return; }}
const canvas = document.createElement('canvas');
canvas.width = video.videoWidth; canvas.height = video.videoHeight;
const ctx = canvas.getContext('2d', {{ willReadFrequently: true }});
const samples = [];
let n = 0;
// start once the element has presented a decoded frame: before that, drawImage gives a blank canvas
video.requestVideoFrameCallback(() => {{ const timer = setInterval(() => {{
  ctx.drawImage(video, 0, 0);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, sq = 0, hash = 0;
  for (let i = 0; i < px.length; i += 4) {{
    const g = px[i + 1]; sum += g; sq += g * g; hash = (hash * 31 + px[i]) | 0;
  }}
  const count = px.length / 4, mean = sum / count;
  samples.push({{ mean, std: Math.sqrt(Math.max(0, sq / count - mean * mean)), hash }});
  if (++n >= arguments[0]) {{ clearInterval(timer); done(samples); }}
}}, 100); }});
"""

INBOUND_FPS = """
const done = arguments[arguments.length - 1];
const peer = Object.values(window.reactdiffRoom.peers).find((p) => p.role === 'engine');
if (!peer) { done(null); return; }
async function decoded() {
  const stats = await peer.pc.getStats();
  let frames = 0;
  stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded; });
  return [frames, performance.now()];
}
decoded().then(([f0, t0]) => setTimeout(() => decoded().then(([f1, t1]) => done((f1 - f0) / ((t1 - t0) / 1000))),
  arguments[0] * 1000));
"""

# The avatar's playback over `arguments[0]` seconds, from the page: every frame the element presents
# (requestVideoFrameCallback; the longest gap between two, or from the start or to the end, is the longest freeze
# seen) and the inbound video's getStats counters over the same span (framesDecoded, Chromium's own freezeCount
# and totalFreezesDuration, loss and repair: packetsLost, nackCount, pliCount, keyFramesDecoded).
AVATAR_PLAYBACK = f"""
const done = arguments[arguments.length - 1];
const video = {AVATAR_VIDEO};
const peer = Object.values(window.reactdiffRoom.peers).find((p) => p.role === 'engine');
if (!video || !peer) {{ done(null); return; }}
const FIELDS = ['framesDecoded', 'framesDropped', 'freezeCount', 'totalFreezesDuration', 'packetsReceived',
  'packetsLost', 'nackCount', 'pliCount', 'keyFramesDecoded', 'bytesReceived'];
async function inbound() {{
  const out = {{}};
  (await peer.pc.getStats()).forEach((s) => {{
    if (s.type === 'inbound-rtp' && s.kind === 'video') for (const f of FIELDS) out[f] = s[f] || 0;
  }});
  return out;
}}
let last = null, longest = 0, presented = 0, running = true;
function onFrame(now) {{
  longest = Math.max(longest, now - last); last = now; presented += 1;
  if (running) video.requestVideoFrameCallback(onFrame);
}}
inbound().then((before) => {{
  const start = performance.now();
  last = start;
  video.requestVideoFrameCallback(onFrame);
  setTimeout(async () => {{
    running = false;
    const end = performance.now();
    const after = await inbound();
    const counts = {{}};
    for (const f of FIELDS) counts[f] = after[f] - before[f];
    done({{ seconds: (end - start) / 1000, presented, longest_gap_ms: Math.max(longest, end - last), counts }});
  }}, arguments[0] * 1000);
}});
"""

# The engine's end of the selected ICE candidate pair: its UDP port (one port carries all media: max-bundle).
ENGINE_MEDIA_PORT = """
const done = arguments[arguments.length - 1];
const peer = Object.values(window.reactdiffRoom.peers).find((p) => p.role === 'engine');
if (!peer) { done(null); return; }
peer.pc.getStats().then((stats) => {
  let port = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      port = stats.get(stats.get(s.selectedCandidatePairId).remoteCandidateId).port;
    }
  });
  done(port);
});
"""
