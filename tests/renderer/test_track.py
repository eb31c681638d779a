"""renderer.track: the avatar track's subscribers, one per peer connection, get frames of their own, made in the
render thread, so the event loop does no pixel work however many peers watch."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder
from aiortc.codecs.vpx import vp8_depayload
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.video.frame import PictureType

from renderer.track import AvatarVideoTrack

W, H = 128, 96


def test_subscribers_get_their_own_frames_and_the_loop_makes_none(monkeypatch):
    made_on: list[str] = []

    def recording(original):
        def make(*args, **kwargs):
            made_on.append(threading.current_thread().name)
            return original(*args, **kwargs)

        return make

    for maker in ("from_ndarray", "from_numpy_buffer"):  # a copy, or a frame over yuv420p planes
        monkeypatch.setattr(av.VideoFrame, maker, recording(getattr(av.VideoFrame, maker)))
    track = AvatarVideoTrack(width=W, height=H, fps=100.0)
    track.put(np.full((H, W, 3), 7, np.uint8))

    async def watch() -> list[list[tuple[int, int, int]]]:
        peers = [track.subscribe() for _ in range(3)]  # each starts from the newest frame (made here, once per peer)
        made_on.clear()
        renderer = threading.Thread(target=render, name="render")
        renderer.start()
        got: list[list[tuple[int, int, int]]] = [[], [], []]  # per peer: (frame object id, pts, pixel value)
        for _ in range(20):
            for k, peer in enumerate(peers):
                frame = await peer.recv()  # a repeated frame is the same object, restamped: read it now
                got[k].append((id(frame), frame.pts, int(frame.to_ndarray(format="rgb24")[0, 0, 0])))
        renderer.join()
        for peer in peers:
            peer.stop()
        return got

    def render() -> None:
        for value in range(10, 30):
            track.put(np.full((H, W, 3), value, np.uint8))

    got = asyncio.run(watch())
    assert set(made_on) == {"render"}  # 3 frames per put, all in the render thread; none on the loop
    for frames in zip(*got, strict=True):
        assert len({frame_id for frame_id, _, _ in frames}) == 3  # no two peers' encoders share a frame
    values = [value for _, _, value in got[0]]
    assert values == sorted(values) and values[-1] == 29  # in order, up to the last frame put
    pts = [pts for _, pts, _ in got[0]]
    assert pts[0] == 0 and all(b > a for a, b in itertools.pairwise(pts))
    assert all(b - a >= 450 for a, b in itertools.pairwise(pts))  # never closer than half a frame (100 fps, 90 kHz)
    assert not track._subscribers  # stop() unsubscribed them


@pytest.mark.parametrize("queue_size", [1, 4])
def test_a_late_subscriber_starts_from_the_newest_frame_and_stopping_the_source_ends_it(queue_size):
    # a room's peer subscribes while frames wait in the track's own queue (nothing reads it there): started from
    # them, its encoder stayed queue_size frames (133 ms at 30 fps) behind the renderer for the whole call
    track = AvatarVideoTrack(width=W, height=H, queue_size=queue_size)
    for value in (1, 2, 3):
        track.put(np.full((H, W, 3), value, np.uint8))

    async def late() -> int:
        peer = track.subscribe()
        first = (await peer.recv()).to_ndarray(format="rgb24")[0, 0, 0]
        track.stop()
        with pytest.raises(MediaStreamError):
            await peer.recv()
        return int(first)

    assert asyncio.run(late()) == 3


def test_a_subscriber_that_fell_behind_gets_the_newest_frame_not_its_backlog():
    # frames put before its encoder's first recv() (the connection still coming up) formed a backlog that, at
    # 30 fps in and out, was never worked off: every later frame went out that many frames late
    track = AvatarVideoTrack(width=W, height=H, fps=100.0)
    peer = track.subscribe()
    for value in (1, 2, 3):
        track.put(np.full((H, W, 3), value, np.uint8))

    async def first_two() -> list[int]:
        return [int((await peer.recv()).to_ndarray(format="rgb24")[0, 0, 0]) for _ in range(2)]

    assert asyncio.run(first_two()) == [3, 3]  # the newest, then it again (nothing newer came)
    assert peer.outlet.dropped == 3  # the black frame it started from, 1 and 2


def test_a_frame_goes_out_as_soon_as_it_is_written_and_a_stall_repeats_the_last_one():
    # a pacing grid of the track's own, started at the first recv(), held each frame until its next slot: 0-33 ms
    # at 30 fps, fixed for the call by the phase between the renderer's clock and the grid
    track = AvatarVideoTrack(width=W, height=H, fps=30.0)
    peer = track.subscribe()

    async def watch() -> tuple[list[float], list[tuple[float, int, int]]]:
        await peer.recv()  # the newest frame at subscription (black)
        written: list[float] = []
        loop = asyncio.get_running_loop()

        def render() -> None:
            for value, gap_s in ((1, 0.03), (2, 0.04), (3, 0.045)):  # at any phase against a 30 fps grid
                time.sleep(gap_s)
                written.append(time.monotonic())
                track.put(np.full((H, W, 3), value, np.uint8))

        renderer = loop.run_in_executor(None, render)
        got = []
        for _ in range(6):  # the renderer stops after 3: then the last frame again, 30 fps
            frame = await peer.recv()
            got.append((time.monotonic(), frame.pts, int(frame.to_ndarray(format="rgb24")[0, 0, 0])))
        await renderer
        return written, got

    written, got = asyncio.run(watch())
    peer.stop()
    assert [value for _, _, value in got] == [1, 2, 3, 3, 3, 3]
    waits = [taken - put for (taken, _, _), put in zip(got, written, strict=False)]
    assert max(waits) < 0.012, waits  # out within a few ms of the write, never held for a slot
    repeats = [b - a for (a, _, _), (b, _, _) in itertools.pairwise(got[2:])]
    assert all(0.025 < gap < 0.06 for gap in repeats), repeats  # 1.5 frames after the last new one, then 1
    pts = [p for _, p, _ in got]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert abs((pts[-1] - pts[0]) / 90_000 - (got[-1][0] - got[0][0])) < 0.002  # pts follow the wall clock


def moving_frames(count: int) -> list[av.VideoFrame]:
    """yuv420p frames of a pattern that moves every frame (so no frame can be skipped as a repeat)."""
    y, x = np.mgrid[0:H, 0:W]
    out = []
    for k in range(count):
        rgb = np.stack([(2 * x + 5 * k) % 256, (3 * y + 7 * k) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = k * 3000, Fraction(1, 90_000)
        out.append(frame)
    return out


def h264_pictures(count: int, keyframe_at: int) -> list[tuple[int, str]]:
    """(encode call, picture type) of every picture decoded from aiortc's H.264 encoder, fed one frame a call."""
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/H264", clockRate=90_000, payloadType=96))
    decoder = av.CodecContext.create("h264", "r")
    out = []
    for k, frame in enumerate(moving_frames(count)):
        units = encoder._encode_frame(frame, force_keyframe=k == keyframe_at)  # NAL units of this call
        stream = b"".join(b"\x00\x00\x00\x01" + unit for unit in units)
        out += [(k, PictureType(picture.pict_type).name) for picture in decoder.decode(av.Packet(stream))]
    return out


def vp8_keyframes(count: int, keyframe_at: int) -> list[bool]:
    """Per encode call of aiortc's VP8 encoder (one frame each): whether its picture is a keyframe."""
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96))
    out = []
    for k, frame in enumerate(moving_frames(count)):
        payloads, _ = encoder.encode(frame, force_keyframe=k == keyframe_at)
        assert payloads, f"frame {k} gave no packets in its own encode() call"
        picture = vp8_depayload(payloads[0])
        out.append(picture[0] & 1 == 0)  # the VP8 frame tag's bit 0 is 0 on a keyframe (RFC 6386, 9.1)
    return out


def test_the_avatar_encoders_add_no_delay_and_make_keyframes_when_a_receiver_asks():
    # what keeps encoding out of the delay: each frame's picture leaves in its own encode() call (no look-ahead,
    # no B-frames to wait for), and keyframes come at the start and on a receiver's request (PLI), not on a timer
    # whose big frames would queue behind each other in the pacer
    pictures = h264_pictures(40, keyframe_at=25)
    assert [k for k, _ in pictures] == list(range(40))
    assert {k for k, kind in pictures if kind == "I"} == {0, 25} and "B" not in {kind for _, kind in pictures}
    assert [k for k, key in enumerate(vp8_keyframes(40, keyframe_at=25)) if key] == [0, 25]
