"""The delay probe's barcode (engine.runtime.probe): drawn and read back exactly, through the avatar's own VP8
encoder and decoder at the room's sizes, and refused when damaged rather than misread."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from engine.runtime.probe import CELLS, INDEX_MOD, ProbeCode, cell_edges, code_bits, draw_code, read_code, strip_rows
from renderer.face import neutral_face
from renderer.vector import VectorAvatar

CODES = [ProbeCode(0), ProbeCode(1, 1), ProbeCode(INDEX_MOD - 1, 63), ProbeCode(12345, 42), ProbeCode(8191, 0)]


@pytest.mark.parametrize("size", [(112, 32), (256, 256), (320, 240), (640, 480)])
def test_a_drawn_code_reads_back(size):
    width, height = size
    for code in CODES:
        rgb = np.full((height, width, 3), 128, np.uint8)
        draw_code(rgb, code)
        assert read_code(rgb) == code
        assert (rgb[strip_rows(height) :] == 128).all()  # the strip only


def test_a_frame_without_a_code_reads_none():
    assert read_code(VectorAvatar(width=256, height=256).draw(neutral_face())) is None
    assert read_code(np.zeros((240, 320, 3), np.uint8)) is None


def test_every_single_damaged_cell_is_refused():
    # a cell misread after video coding must give no index rather than a wrong one (CRC-6 sees every 1-bit error)
    code = ProbeCode(5000, 17)
    edges = cell_edges(280)
    for cell in range(2, CELLS):
        rgb = np.zeros((240, 280, 3), np.uint8)
        draw_code(rgb, code)
        flipped = 1 - code_bits(code)[cell]
        rgb[: strip_rows(240), edges[cell] : edges[cell + 1]] = 255 * flipped
        assert read_code(rgb) is None, cell


def vp8_round_trip(frames: list[np.ndarray], bitrate: int) -> list[np.ndarray]:
    """Frames through aiortc's own VP8 encoder (what the engine sends) and decoder (what it receives with)."""
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    encoder.target_bitrate = bitrate
    out = []
    for k, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = k * 3000, Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vp8_depayload(p) for p in payloads)
        for decoded in decoder.decode(JitterFrame(data, timestamp)):
            out.append(decoded.to_ndarray(format="rgb24"))
    return out


@pytest.mark.parametrize(("size", "bitrate"), [((640, 480), 500_000), ((256, 256), 250_000), ((320, 240), 250_000)])
def test_codes_survive_the_avatars_vp8_at_its_lowest_bitrates(size, bitrate):
    avatar = VectorAvatar(width=size[0], height=size[1])
    rng = np.random.default_rng(0)
    frames, codes = [], []
    for k in range(40):
        face = neutral_face()
        face[:52] = rng.uniform(0, 0.6, 52).astype(np.float32)  # a moving face under the strip
        rgb = avatar.draw(face).copy()
        codes.append(ProbeCode(int(rng.integers(INDEX_MOD)), k % 64))
        draw_code(rgb, codes[-1])
        frames.append(rgb)
    decoded = vp8_round_trip(frames, bitrate)
    assert len(decoded) == len(frames)
    assert [read_code(rgb) for rgb in decoded] == codes
