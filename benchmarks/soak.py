"""A long run of the engine, to show that memory stays flat: calls last hours, and a leak ends them.

.venv/bin/python benchmarks/soak.py                    # 5 minutes of speaker, --fast, the shipped model
.venv/bin/python benchmarks/soak.py --minutes 30 --realtime

Makes a synthetic speaker clip (`reactdiff-trainer clip`, cached under runs/soak/), runs `reactdiff-engine` on it
as a user would (side-by-side mp4 with audio), reads the process's resident memory every second and prints one
JSON object: {"media_s", "wall_s", "rtf", "mode", "rss_mb": {"after_warmup", "end", "peak"},
"rss_growth_mb_per_media_min", "windows_dropped", "frames_filled"}. The growth is the least-squares slope of
resident memory over media time, after the first fifth of the run (allocator and codec warm-up).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WARMUP_FRACTION = 0.2


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
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the speaker clip (default 5)")
    parser.add_argument("--realtime", action="store_true", help="pace the clip in real time, as a live call")
    parser.add_argument("--model", type=Path, help="model directory (default: the shipped model)")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
