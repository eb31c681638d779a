"""reactdiff-serve (and reactdiff-engine serve) as a user runs it: one-line errors with exit status 2, and a real
start on 127.0.0.1 that measures its costs, prints its URL and limits, answers, and stops on SIGTERM with 143."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from engine.cli import main as engine_main
from engine.serving.cli import main

TOKEN = "cli-test-token-0123456789"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--token", "short"], "--token: use at least 16 characters"),
        (["--gather-ms", "-5"], "--gather-ms -5.0: use 0 to 1000 ms"),
        (["--threads", "0"], "--threads 0: use at least 1"),
        (["--ray-address", "auto"], "--ray-address is for --service ray"),
        (["--model", "/nonexistent/model"], "/nonexistent/model"),
        (["--buckets", "1,x"], "--buckets 1,x: give batch sizes separated by commas"),
        (["--max-batch", "16", "--buckets", "1,2,8"], "largest at least max_batch"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(args, problem, capsys, tiny_model_dir):
    if "--model" not in args:
        args = [*args, "--model", str(tiny_model_dir), "--no-video"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("reactdiff-serve: error: ") and problem in err and err.count("\n") == 1


def test_reactdiff_engine_serve_is_reactdiff_serve(capsys):
    assert engine_main(["serve", "--token", "short"]) == 2
    assert "reactdiff-serve: error: --token" in capsys.readouterr().err


@pytest.mark.slow
def test_it_starts_measures_its_limits_answers_and_stops_on_sigterm(tiny_model_dir):
    command = [sys.executable, "-m", "engine.serving.cli", "--port", "0", "--model", str(tiny_model_dir), "--token",
               TOKEN, "--no-video", "--size", "64x48"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            first = proc.stdout.readline()
            match = re.match(r"reactdiff-serve: (http://127\.0\.0\.1:\d+) \(token (\S+)\); .* (\d+) audio-only", first)
            assert match, first + proc.stderr.read()
            url, token, audio = match.group(1), match.group(2), int(match.group(3))
            assert token == TOKEN and audio >= 1 and "curl -X POST" in proc.stdout.readline()
            request = urllib.request.Request(f"{url}/v1/capacity", headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=5) as r:
                capacity = json.load(r)
            assert capacity["limits"] == {"audio": audio, "video": 0}
            assert capacity["sessions"] == {"audio": 0, "video": 0}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 143
        finally:
            if proc.poll() is None:
                proc.kill()
