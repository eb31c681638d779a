"""The delay probe: frame indices drawn as a barcode into pictures, and what the engine did with each one, when.

In the diagnostic mode (`StreamConfig.probe`) every speaker video frame carries its index in a barcode along its
top edge (the speaker's camera shows it: tests/e2e/harness.py draws it into the clip Chromium plays), the engine
reads it from the decoded pixels, and every avatar frame it renders carries, in the same barcode, the index of
the newest speaker frame that frame depended on and its own output tick. A browser that reads both barcodes from
what it captured and what it displayed measures the whole speaker-to-avatar delay on its own clock
(engine/room_server/static/room.js); `DelayProbe` holds the engine's times for each stage in between.

    draw_code(rgb, ProbeCode(index=1234, tick=7))   # in place, rows [0, strip_rows(H)) of an (H, W, 3) frame
    read_code(rgb)                                   # ProbeCode(1234, 7), or None (no code, or damaged)

The layout (room.js reads the same): a strip `strip_rows(H)` rows high across the whole width, cut into `CELLS`
equal cells: a white and a black reference cell, then INDEX_BITS, TICK_BITS and CHECK_BITS cells, most
significant bit first, white for 1. The check is the CRC-6 (polynomial x^6 + x + 1) of the 20 data bits, so a
cell misread after video coding gives None rather than a wrong index.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

INDEX_BITS = 14  # speaker frame index modulo 16384 (655 s at 25 fps)
TICK_BITS = 6  # avatar output tick modulo 64 (2.1 s at 30 fps): tells apart frames that show the same index
CHECK_BITS = 6
DATA_BITS = INDEX_BITS + TICK_BITS
CELLS = 2 + DATA_BITS + CHECK_BITS  # the two reference cells first
INDEX_MOD = 1 << INDEX_BITS
TICK_MOD = 1 << TICK_BITS
MIN_CONTRAST = 64  # luma between the white and the black reference cell below which nothing is read
PROBE_HISTORY = 100_000  # records kept per kind (about 55 minutes of 30 fps avatar frames)


@dataclass(frozen=True)
class ProbeCode:
    """What one barcode says: a speaker frame index and an avatar output tick (0 in speaker frames)."""

    index: int
    tick: int = 0


def strip_rows(height: int) -> int:
    """Rows of the barcode strip in a frame `height` rows high (a twentieth, at least 8)."""
    return max(8, height // 20)


def crc6(value: int, bits: int) -> int:
    """CRC-6 (polynomial x^6 + x + 1, initial 0) of the `bits` low bits of `value`, most significant first."""
    crc = 0
    for i in reversed(range(bits)):
        feedback = ((value >> i) & 1) ^ ((crc >> 5) & 1)
        crc = (crc << 1) & 0x3F
        if feedback:
            crc ^= 0x03
    return crc


def code_bits(code: ProbeCode) -> list[int]:
    """The CELLS cell values (1 white, 0 black) of `code`, references included."""
    data = ((code.index % INDEX_MOD) << TICK_BITS) | (code.tick % TICK_MOD)
    word = (data << CHECK_BITS) | crc6(data, DATA_BITS)
    return [1, 0, *(((word >> i) & 1) for i in reversed(range(DATA_BITS + CHECK_BITS)))]


def cell_edges(width: int) -> NDArray[np.int64]:
    """(CELLS + 1,) column where each cell starts, then the width."""
    return np.round(np.linspace(0, width, CELLS + 1)).astype(np.int64)


def draw_code(rgb: NDArray[np.uint8], code: ProbeCode) -> None:
    """Draw `code` into the top strip of an (H, W, 3) uint8 frame, in place."""
    rows, edges = strip_rows(rgb.shape[0]), cell_edges(rgb.shape[1])
    for i, bit in enumerate(code_bits(code)):
        rgb[:rows, edges[i] : edges[i + 1]] = 255 if bit else 0


def read_code(rgb: NDArray[np.uint8]) -> ProbeCode | None:
    """The code in the top strip of an (H, W, 3) uint8 frame; None when there is none or its check fails.

    Each cell is read as the mean luma of its middle half (cell edges blur in coded video), against the midpoint
    of the two reference cells."""
    height, width = rgb.shape[:2]
    rows, edges = strip_rows(height), cell_edges(width)
    strip = rgb[rows // 4 : rows - rows // 4].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # (r, W)
    lumas = []
    for lo, hi in itertools.pairwise(edges):
        quarter = (hi - lo) // 4
        lumas.append(float(strip[:, lo + quarter : hi - quarter].mean()))
    white, black = lumas[0], lumas[1]
    if white - black < MIN_CONTRAST:
        return None
    word = 0
    for luma in lumas[2:]:
        word = (word << 1) | int(luma > (white + black) / 2)
    data, check = word >> CHECK_BITS, word & ((1 << CHECK_BITS) - 1)
    if crc6(data, DATA_BITS) != check:
        return None
    return ProbeCode(index=data >> TICK_BITS, tick=data & (TICK_MOD - 1))


@dataclass(frozen=True)
class SpeakerRecord:
    """A speaker video frame the engine tracked (times: time.monotonic(), seconds)."""

    tag: int
    """Its index: the barcode's (probe mode) or the engine's own count of video frames."""
    arrival_s: float
    """When the source handed it out."""
    tracked_s: float
    """When its face reached the speaker timeline."""


@dataclass(frozen=True)
class WindowRecord:
    """A window the inference worker ran (times: time.monotonic(), seconds)."""

    k: int
    cut_s: float
    """When the reader cut it (its last audio frame had arrived)."""
    start_s: float
    """When the worker started it."""
    ready_s: float
    """When its frames were in the listener timeline."""


@dataclass(frozen=True)
class FrameRecord:
    """An avatar frame the player rendered (times: time.monotonic(), seconds)."""

    tag: int
    """The tag of the newest speaker video frame it depended on (-1: none yet)."""
    tick: int
    """Its output tick (the barcode carries it modulo TICK_MOD)."""
    window: int
    """The window whose frames it shows (for frames filled by hold/decay, the last window that ran; -1: none)."""
    render_s: float
    """When the player started drawing it."""
    written_s: float
    """When the sink had it (for a room: queued for the encoder)."""


class DelayProbe:
    """Thread-safe log of the stages each speaker frame went through (bounded: PROBE_HISTORY records per kind)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.speaker: deque[SpeakerRecord] = deque(maxlen=PROBE_HISTORY)
        self.windows: deque[WindowRecord] = deque(maxlen=PROBE_HISTORY)
        self.frames: deque[FrameRecord] = deque(maxlen=PROBE_HISTORY)

    def add(self, record: SpeakerRecord | WindowRecord | FrameRecord) -> None:
        with self._lock:
            if isinstance(record, SpeakerRecord):
                self.speaker.append(record)
            elif isinstance(record, WindowRecord):
                self.windows.append(record)
            else:
                self.frames.append(record)

    def snapshot(self) -> tuple[list[SpeakerRecord], list[WindowRecord], list[FrameRecord]]:
        """Copies of the three logs, oldest first."""
        with self._lock:
            return list(self.speaker), list(self.windows), list(self.frames)
