"""Fixtures shared by the engine tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def alsa_fifo_device(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A stand-in capture device for PortAudio: ALSA's `speakerfile` (S16_LE, 48 kHz, stereo) reads a FIFO.

    Returns (fifo, env): write raw samples into the FIFO, and run the code under test in a subprocess with `env`
    (PortAudio reads $XDG_CONFIG_HOME/alsa/asoundrc once, when sounddevice is imported).
    """
    fifo = tmp_path / "speaker.raw"
    os.mkfifo(fifo)
    (tmp_path / "alsa").mkdir()
    (tmp_path / "alsa" / "asoundrc").write_text(
        'pcm.speakerfile {\n type plug\n slave { pcm { type file\n slave.pcm null\n file "/dev/null"\n'
        f' infile "{fifo}"\n format raw }}\n format S16_LE\n rate 48000\n channels 2 }}\n}}\n'
    )
    return fifo, {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
