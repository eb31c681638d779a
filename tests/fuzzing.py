"""Hypothesis strategies and settings shared by the property-based (fuzz) tests.

    from tests.fuzzing import FUZZ, damaged, within

    @FUZZ
    @given(damaged(valid_bytes))
    def check(data: bytes) -> None:
        within(lambda: load(data))  # in a thread: a hang fails the test instead of stopping the run

Each fuzz test builds valid artefacts once (a model directory, `write_small_media`'s files) and damages their
bytes per case, so a case costs milliseconds and 1,000 of them fit in CI.
"""

from __future__ import annotations

import fractions
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

# 1,000 cases a property, the same ones on every run and machine (no random seed, no example database: CI must
# not flake on a new seed); no deadline: timings on a shared 2-core machine vary
FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None)
# Hypothesis warns before printing a failing case of more than 30 kB (a damaged manifest is 90 kB); under pytest's
# warnings-as-errors that warning would stand in for the failure itself.
LARGE_REPR = "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
HANG_S = 20.0  # a case still running after this long is a hang (they take milliseconds)


def within(check: Callable[[], None], timeout_s: float = HANG_S) -> None:
    """Run `check` in a thread of its own and re-raise what it raised; one still running after `timeout_s` fails
    the test as a hang (its daemon thread is left behind) instead of hanging the test run."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            check()
        except BaseException as exc:  # handed to the test's thread
            raised.append(exc)

    thread = threading.Thread(target=run, name="fuzz-case", daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"a case still running after {timeout_s} s: a hang"
    if raised:
        raise raised[0]


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` cut short, with bytes flipped, inserted or removed, emptied, or replaced by random bytes."""
    size = len(data)
    how = draw(st.sampled_from(["truncate", "flip", "insert", "remove", "empty", "random"]))
    if how == "truncate":
        return data[: draw(st.integers(0, size - 1))]
    if how == "flip":
        out = bytearray(data)
        positions = st.tuples(st.integers(0, size - 1), st.integers(1, 255))
        for at, mask in draw(st.lists(positions, min_size=1, max_size=8, unique_by=lambda flip: flip[0])):
            out[at] ^= mask
        return bytes(out)
    if how == "insert":
        at = draw(st.integers(0, size))
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    if how == "remove":
        at = draw(st.integers(0, size - 1))
        return data[:at] + data[at + draw(st.integers(1, 64)) :]
    return b"" if how == "empty" else draw(st.binary(max_size=4096))


# --- small valid media files --------------------------------------------------------------------------------

# (container format, video codec, audio codec, suffix): one small file of each is what fuzz cases damage.
FORMATS = [
    ("mp4", "libx264", "aac", ".mp4"), ("webm", "libvpx", "libopus", ".webm"), ("matroska", "mpeg4", "flac", ".mkv"),
    ("mpegts", "libx264", "mp3", ".ts"), ("wav", None, "pcm_s16le", ".wav"), ("ogg", None, "libopus", ".ogg"),
    ("mp3", None, "libmp3lame", ".mp3"), ("image2", "png", None, ".png"),
]  # fmt: skip
SUFFIXES = [".mp4", ".wav", ".png", ".webm", ".bin", ""]  # besides each file's own: wrong ones, or none


def write_small_media(folder: Path, seconds: float = 0.4) -> dict[str, bytes]:
    """Write one file of each of FORMATS into `folder`: 64x48 gray frames and/or a 440 Hz tone, a few KB each.

    Returns suffix -> the file's bytes.
    """
    written = {}
    for fmt, video, audio, suffix in FORMATS:
        frames = 1 if video == "png" else round(seconds * 25)
        path = write_media(folder / f"clip{suffix}", fmt, video and (video, frames), audio and (audio, seconds))
        written[suffix] = path.read_bytes()
    return written


def write_media(
    path: Path, fmt: str, video: tuple[str, int] | None, audio: tuple[str, float] | None, pts_offset_s: float = 0.0
) -> Path:
    """A file of (codec, frames) 25 fps 64x48 gray video and/or (codec, seconds) of a mono 440 Hz tone.

    `pts_offset_s` moves the second half of the video frames that much later (a damaged timeline).
    """
    with av.open(str(path), "w", format=fmt, options={"movflags": "faststart"} if fmt == "mp4" else {}) as out:
        streams = []
        if video is not None:
            streams.append(_gray_video(out, *video))
        if audio is not None:
            streams.append(_tone_audio(out, *audio))
        for stream, frames in streams:
            for k, frame in enumerate([*frames, None]):
                for packet in stream.encode(frame):
                    if pts_offset_s and k > len(frames) // 2 and packet.pts is not None:
                        packet.pts = packet.dts = packet.pts + round(pts_offset_s / packet.time_base)
                    out.mux(packet)
    return path


def _gray_video(out: av.container.OutputContainer, codec: str, count: int) -> tuple[av.VideoStream, list]:
    stream = out.add_stream(codec, rate=25)
    stream.width, stream.height = 64, 48
    stream.pix_fmt = {"png": "rgb24", "mjpeg": "yuvj420p"}.get(codec, "yuv420p")
    return stream, [av.VideoFrame.from_ndarray(np.full((48, 64, 3), 9 * k % 256, np.uint8)) for k in range(count)]


def _tone_audio(out: av.container.OutputContainer, codec: str, seconds: float) -> tuple[av.AudioStream, list]:
    stream = out.add_stream(codec, rate=48000 if "opus" in codec else 44100)
    stream.layout = "mono"
    context = stream.codec_context
    rate, size, planar = context.sample_rate, context.frame_size or 1024, not context.format.name.startswith("s16")
    t = np.arange(round(seconds * rate) + size) / rate  # whole frames: fixed-size encoders need them
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frames = []
    for start in range(0, round(seconds * rate), size):
        chunk = samples[None, start : start + size]
        data = chunk if planar else (chunk * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data, format="fltp" if planar else "s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
        frames.append(frame)
    return stream, frames


def media_cases(originals: dict[str, bytes]) -> st.SearchStrategy[tuple[str, bytes]]:
    """(a suffix to store it under, the damaged bytes of one of `originals`)."""
    return st.sampled_from(sorted(originals)).flatmap(
        lambda suffix: st.tuples(st.sampled_from([*SUFFIXES, suffix]), damaged(originals[suffix]))
    )


# --- headers that claim what the data cannot back ------------------------------------------------------------


def png_claiming(width: int, height: int, rows: int = 2) -> bytes:
    """A PNG whose header claims width x height RGB pixels, followed by only `rows` rows of pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels = zlib.compress(b"".join(b"\x00" + bytes(3 * width) for _ in range(min(rows, height))))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlacing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def y4m_claiming(width: int, height: int, data: bytes = bytes(4096)) -> bytes:
    """A raw YUV4MPEG2 stream of width x height frames at 25 fps, with `data` as its first frame's bytes."""
    return f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + data


def wav_claiming(rate: int, channels: int, bits: int = 16, data: bytes = bytes(8192)) -> bytes:
    """A PCM WAV whose header claims `rate` Hz, `channels` and `bits` per sample, followed by `data`."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@st.composite
def hostile_headers(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, bytes): a valid PNG, Y4M or WAV header claiming any frame size up to 100000 x 100000 pixels, or
    any sample rate, channel count and sample size."""
    size = st.one_of(st.integers(1, 100_000), st.sampled_from([4096, 4097, 16000, 65535, 100_000]))
    kind = draw(st.sampled_from([".png", ".y4m", ".wav"]))
    if kind == ".png":
        return kind, png_claiming(draw(size), draw(size))
    if kind == ".y4m":
        return kind, y4m_claiming(draw(size), draw(size))
    rate = draw(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([1, 100, 3999, 4000, 768_000, 768_001])))
    return kind, wav_claiming(rate, draw(st.integers(0, 300)), draw(st.sampled_from([0, 7, 8, 16, 24, 32, 64])))
