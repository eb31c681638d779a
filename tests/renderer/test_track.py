"""renderer.track: the avatar track's subscribers, one per peer connection, get frames of their own, made in the
render thread, so the event loop does no pixel work however many peers watch."""

from __future__ import annotations

import asyncio
import threading

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

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
    assert [pts for _, pts, _ in got[0]] == [k * 900 for k in range(20)]  # 100 fps on the 90 kHz clock
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
