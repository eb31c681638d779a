"""espeak-ng, the system text-to-speech program: the only place the synthetic corpus runs an external binary.

Speech is written with ``espeak-ng -w FILE`` (its ``--stdout`` stream carries a WAV header with placeholder
sizes) and read back with the stdlib `wave` module. espeak-ng silently falls back to a near match for an
unknown voice, so voices are checked against its own voice list before use (`check_voices`).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

BINARY = "espeak-ng"
INSTALL_HINT = "install it (Debian/Ubuntu: sudo apt-get install espeak-ng; macOS: brew install espeak-ng)"


class EspeakError(RuntimeError):
    """espeak-ng is missing, refused a request, or wrote no audio."""


@dataclass(frozen=True)
class Speech:
    """Mono speech from espeak-ng."""

    samples: NDArray[np.float32]
    """(N,) samples in [-1, 1]."""
    rate: int
    """Sample rate in Hz (espeak-ng writes 22050)."""


def find_espeak() -> str:
    """Path of the espeak-ng binary; raises `EspeakError` with an install hint when it is not on PATH."""
    path = shutil.which(BINARY)
    if path is None:
        raise EspeakError(f"{BINARY} was not found on PATH; the synthetic corpus needs it for speech: {INSTALL_HINT}")
    return path


def _run(binary: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=60)
    except OSError as exc:
        raise EspeakError(f"could not run {binary}: {exc}; {INSTALL_HINT}") from exc


@functools.cache
def espeak_version(binary: str) -> str:
    """The version espeak-ng reports, e.g. "1.51"."""
    out = _run(binary, ["--version"]).stdout
    match = re.search(r"text-to-speech:\s*(\S+)", out)
    if match is None:
        raise EspeakError(f"{binary} --version printed {out.strip()!r}, not an espeak-ng version line")
    return match.group(1)


@functools.cache
def english_voices(binary: str) -> tuple[frozenset[str], frozenset[str]]:
    """(English voice names, variant names) that this espeak-ng installation can speak.

    Voice names are the language codes and voice files of the English voices, leaving out MBROLA voices
    (they need the separate mbrola program); variants are the names that go after ``+`` (``en-us+f3``).
    """
    voices: set[str] = set()
    for line in _run(binary, ["--voices=en"]).stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[1].startswith("en") and not cols[4].startswith("mb/"):
            voices.update({cols[1], cols[4].split("/")[-1].lower()})
    variants = {
        cols[4].split("/")[-1]
        for cols in (line.split() for line in _run(binary, ["--voices=variant"]).stdout.splitlines()[1:])
        if len(cols) >= 5 and cols[4].startswith("!v/")
    }
    return frozenset(voices), frozenset(variants)


def check_voices(binary: str, specs: list[str]) -> None:
    """Raise `EspeakError` naming the first voice spec (``LANG`` or ``LANG+VARIANT``) espeak-ng does not have."""
    voices, variants = english_voices(binary)
    for spec in specs:
        name, _, variant = spec.partition("+")
        if name.lower() not in voices:
            raise EspeakError(
                f"unknown espeak-ng voice {name!r} in {spec!r}; English voices here: {', '.join(sorted(voices))}"
            )
        if variant and variant not in variants:
            raise EspeakError(
                f"unknown espeak-ng variant {variant!r} in {spec!r}; try one of m1..m7, f1..f5 "
                f"(all variants: espeak-ng --voices=variant)"
            )


def synthesize(binary: str, text: str, *, voice: str, rate_wpm: int, pitch: int, amplitude: int = 100) -> Speech:
    """Speak `text` with espeak-ng: `voice` like ``en-us+f3``, rate in words per minute, pitch and amplitude 0-200."""
    with tempfile.TemporaryDirectory(prefix="reactdiff-espeak-") as tmp:
        path = Path(tmp) / "speech.wav"
        args = ["-v", voice, "-s", str(rate_wpm), "-p", str(pitch), "-a", str(amplitude), "-w", str(path), "--", text]
        done = _run(binary, args)
        if done.returncode != 0 or not path.is_file():
            raise EspeakError(f"{binary} {' '.join(args)} failed (exit {done.returncode}): {done.stderr.strip()}")
        return read_wav(path)


def read_wav(path: Path) -> Speech:
    """Read a 16-bit PCM wav (mono, or the first channel of several) as float32 samples in [-1, 1]."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise EspeakError(f"{path}: expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit samples")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, wav.getnchannels())
        return Speech(samples=(frames[:, 0].astype(np.float32) / 32768.0), rate=wav.getframerate())
