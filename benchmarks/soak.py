"""A long run of the engine, to show that memory stays flat: calls last hours, and a leak ends them.

.venv/bin/python benchmarks/soak.py                    # 5 minutes of speaker, --fast, the shipped model
.venv/bin/python benchmarks/soak.py --minutes 30 --realtime
.venv/bin/python benchmarks/soak.py --room --minutes 30    # a call: a browser and the engine in a room

Makes a synthetic speaker clip (`reactdiff-trainer clip`, cached under runs/soak/), runs `reactdiff-engine` on it
as a user would (side-by-side mp4 with audio), reads the process's resident memory every second and prints one
JSON object: {"media_s", "wall_s", "rtf", "mode", "rss_mb": {"after_warmup", "end", "peak"},
"rss_growth_mb_per_media_min", "windows_dropped", "frames_filled"}. The growth is the least-squares slope of
resident memory over media time, after the first fifth of the run (allocator and codec warm-up).

--room: reactdiff-room on 127.0.0.1, headless Chromium as the speaker (fake camera and mic looping a synthetic
clip, tests/e2e/harness.py) and `reactdiff-engine --room` in this process, for --minutes of wall time. Sampled
every SAMPLE_S: resident memory, file descriptors, Python and OS threads (tests/resources.py); every QUEUE_SCAN_S:
the length of every deque and queue the garbage collector can reach, by owner class and attribute. Prints
{"mode": "room", "minutes", "rss_mb": {"after_warmup", "end", "peak"}, "rss_growth_percent", "fds", "threads",
"os_threads" (each {"after_warmup", "end", "max"}), "queues": {"scans", "longest", "growing"}, "browser": the
avatar's playback over the last PLAYBACK_S (decoded fps, longest gap, freezes), "engine_exit"}. "growing" lists
the queues whose longest length in the second half of the run is over twice (and 50 items above) the first half's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import queue
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests package (browser harness, resource counts) for --room
WARMUP_FRACTION = 0.2
SAMPLE_S = 2.0
QUEUE_SCAN_S = 30.0
PLAYBACK_S = 10.0


def rss_mb(pid: int) -> float | None:
    """Resident memory of `pid` in MiB (None once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def speaker_clip(seconds: int) -> Path:
    """A synthetic speaker of `seconds` (made once, then reused)."""
    clip = REPO / "runs" / "soak" / f"speaker_{seconds}s.mp4"
    if not clip.exists():
        clip.parent.mkdir(parents=True, exist_ok=True)
        trainer = [sys.executable, "-m", "trainer.cli", "clip", "--out", str(clip), "--seconds", str(seconds)]
        subprocess.run([*trainer, "--seed", "1"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return clip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the speaker clip, or of the call "
                        "with --room (default 5)")  # fmt: skip
    parser.add_argument("--realtime", action="store_true", help="pace the clip in real time, as a live call")
    parser.add_argument("--room", action="store_true", help="a call in a room with a browser (see above)")
    parser.add_argument("--model", type=Path, help="model directory (default: the shipped model)")
    args = parser.parse_args(argv)
    if args.room:
        return room_soak(args.minutes, args.model)
    seconds = max(4, round(args.minutes * 60))
    clip = speaker_clip(seconds)
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.json"
        out = Path(tmp) / "out.mp4"
        pace = "--realtime" if args.realtime else "--fast"
        command = [sys.executable, "-m", "engine.cli", "--input", str(clip), "--output", str(out), "--side-by-side",
                   "--quiet", "--stats", str(stats_path), pace]  # fmt: skip
        if args.model is not None:
            command += ["--model", str(args.model)]
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
        samples: list[tuple[float, float]] = []  # (wall seconds, MiB)
        while process.poll() is None:
            mb = rss_mb(process.pid)
            if mb is not None:
                samples.append((time.monotonic() - start, mb))
            time.sleep(1.0)
        err = process.stderr.read() if process.stderr is not None else ""
        if process.returncode != 0:
            print(f"benchmarks/soak.py: the engine failed ({process.returncode}): {err[-2000:]}", file=sys.stderr)
            return 1
        stats = json.loads(stats_path.read_text())
    wall = np.array([t for t, _ in samples])
    mb = np.array([m for _, m in samples])
    steady = wall >= WARMUP_FRACTION * wall[-1]
    media_per_wall = stats["media_s"] / stats["wall_s"]
    slope = np.polyfit(wall[steady] * media_per_wall / 60, mb[steady], 1)[0] if steady.sum() >= 3 else None
    result = {
        "media_s": round(stats["media_s"], 1), "wall_s": round(stats["wall_s"], 1), "rtf": round(stats["rtf"], 3),
        "mode": stats["mode"],
        "rss_mb": {"after_warmup": round(float(mb[steady][0]), 1), "end": round(float(mb[-1]), 1),
                   "peak": round(float(mb.max()), 1)},
        "rss_growth_mb_per_media_min": None if slope is None else round(float(slope), 3),
        "windows_dropped": stats["windows"]["dropped"], "frames_filled": stats["frames"]["filled"],
    }  # fmt: skip
    print(json.dumps(result))
    return 0


def queue_lengths() -> dict[str, int]:
    """The longest deque, asyncio.Queue or queue.Queue held in an attribute of each (class, attribute) pair, over
    every object the garbage collector tracks (instances with a __dict__)."""
    longest: dict[str, int] = {}
    with warnings.catch_warnings():  # (deprecated module attributes warn when read)
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:  # any object at all: lazy C bindings raise on attribute access, other threads change dicts
                fields = getattr(obj, "__dict__", None)
                items = list(fields.items()) if isinstance(fields, dict) else []
            except Exception:
                continue
            for name, value in items:
                if isinstance(value, asyncio.Queue | queue.Queue):
                    size = value.qsize()
                elif isinstance(value, collections.deque):
                    size = len(value)
                else:
                    continue
                key = f"{type(obj).__qualname__}.{name}"
                longest[key] = max(longest.get(key, 0), size)
    return longest


def flat(values: list[int], warm: int) -> dict[str, int]:
    return {"after_warmup": values[warm], "end": values[-1], "max": max(values[warm:])}


def growing_queues(scans: list[dict[str, int]]) -> list[str]:
    """The queues whose longest length in the second half of the scans is over twice (and 50 above) the first's."""
    half = len(scans) // 2
    first: collections.Counter[str] = collections.Counter()
    second: collections.Counter[str] = collections.Counter()
    for k, scan in enumerate(scans):
        into = first if k < half else second
        for key, size in scan.items():
            into[key] = max(into[key], size)
    return sorted(key for key, size in second.items() if size > 2 * first[key] and size > first[key] + 50)


def room_soak(minutes: float, model: Path | None) -> int:
    """The --room mode (see the module docstring)."""
    import aioice.ice

    from tests.e2e.harness import (
        AVATAR_PLAYBACK,
        EngineThread,
        chromium,
        missing_tools,
        room_server,
        speaker_clip,
        wait_for,
    )
    from tests.resources import Resources

    problem = missing_tools()
    if problem:
        print(f"benchmarks/soak.py: {problem}", file=sys.stderr)
        return 2
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # the call stays on loopback
    samples: list[tuple[float, Resources]] = []  # (MiB, counts)
    scans: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory() as tmp, room_server() as url:
        y4m, wav = speaker_clip(Path(tmp), seconds=6.0)  # Chromium's fake devices loop it
        with chromium(y4m, wav) as driver:
            driver.set_script_timeout(PLAYBACK_S + 60)
            driver.get(url + "&name=speaker")
            wait_for(driver, "return window.reactdiffRoom && window.reactdiffRoom.id")
            argv = ["--room", url, "--quiet", *(["--model", str(model)] if model else [])]
            engine = EngineThread(argv)
            engine.start()
            wait_for(driver, "const v = document.querySelector('.tile.engine video'); return v && v.videoWidth > 0",
                     120)  # fmt: skip
            start = time.monotonic()
            next_scan = start
            while time.monotonic() - start < minutes * 60 and engine.is_alive():
                samples.append((rss_mb(os.getpid()) or 0.0, Resources.now()))
                if time.monotonic() >= next_scan:
                    scans.append(queue_lengths())
                    next_scan += QUEUE_SCAN_S
                time.sleep(SAMPLE_S)
            playback = driver.execute_async_script(AVATAR_PLAYBACK, PLAYBACK_S)
    engine.join(30)  # the room server shut down: the engine leaves with the one-line "room closed" error
    print(json.dumps(room_figures(minutes, samples, scans, playback, engine.code)))
    return 0 if engine.code == 2 else 1


def room_figures(minutes: float, samples: list[tuple[float, Any]], scans: list[dict[str, int]],
                 playback: dict[str, Any] | None, code: int | None) -> dict[str, Any]:  # fmt: skip
    """The --room JSON from the samples (MiB, tests.resources.Resources)."""
    mb = np.array([m for m, _ in samples])
    warm = int(len(samples) * WARMUP_FRACTION)
    tail = max(1, len(samples) // 20)  # medians of the first and last twentieth: a sample is noisy
    after_warmup, end = float(np.median(mb[warm : warm + tail])), float(np.median(mb[-tail:]))
    browser = None
    if playback is not None:
        browser = {
            "decoded_fps": round(playback["counts"]["framesDecoded"] / playback["seconds"], 1),
            "longest_gap_ms": round(playback["longest_gap_ms"]),
            **{k: playback["counts"][k] for k in ("freezeCount", "totalFreezesDuration", "packetsLost")},
        }
    longest = scans[-1] if scans else {}
    return {
        "mode": "room", "minutes": minutes,
        "rss_mb": {"after_warmup": round(after_warmup, 1), "end": round(end, 1), "peak": round(float(mb.max()), 1)},
        "rss_growth_percent": round(100 * (end - after_warmup) / after_warmup, 2),
        "fds": flat([r.fds for _, r in samples], warm), "threads": flat([r.threads for _, r in samples], warm),
        "os_threads": flat([r.tasks for _, r in samples], warm),
        "queues": {"scans": len(scans), "longest": dict(sorted(longest.items(), key=lambda kv: -kv[1])[:8]),
                   "growing": growing_queues(scans)},
        "browser": browser, "engine_exit": code,
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
