"""engine.rooms.jitter: a received frame reaches its decoder once it is complete, not once later packets came;
checked against aiortc's own buffer on the same packets, and through a real aiortc connection into a room Peer."""

from __future__ import annotations

import asyncio
import fractions
import time

import aioice.ice
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from engine.rooms.jitter import LowDelayJitterBuffer


def packet(seq: int, ts: int, *, marker: bool = False, data: bytes = b"x") -> RtpPacket:
    p = RtpPacket(sequence_number=seq, timestamp=ts, marker=int(marker))
    p._data = data  # type: ignore[attr-defined]  (what aiortc's receiver sets: the depayloaded bytes)
    return p


def released(buffer: JitterBuffer, packets: list[RtpPacket]) -> list[tuple[int, int | None]]:
    """(sequence number added, timestamp of the frame that add released or None) for each packet."""
    out = []
    for p in packets:
        frame = buffer.add(p)[1]
        out.append((p.sequence_number, None if frame is None else frame.timestamp))
    return out


def video_frames(count: int, per_frame: int = 3) -> list[RtpPacket]:
    """`count` frames of `per_frame` packets, the last of each with the marker bit (timestamps 3000 apart)."""
    return [
        packet(f * per_frame + i, f * 3000, marker=i == per_frame - 1) for f in range(count) for i in range(per_frame)
    ]


def test_a_video_frame_leaves_with_its_last_packet():
    got = released(LowDelayJitterBuffer(512, is_video=True), video_frames(3))
    assert [ts for seq, ts in got if ts is not None] == [0, 3000, 6000]
    assert [seq for seq, ts in got if ts is not None] == [2, 5, 8]  # each frame's marker packet
    aiortc = released(JitterBuffer(512, is_video=True), video_frames(3))
    assert [seq for seq, ts in aiortc if ts is not None] == [3, 6]  # the next frame's first packet (40 ms later)


def test_a_frame_without_a_marker_leaves_when_the_next_one_begins_and_a_missing_packet_is_waited_for():
    packets = [packet(0, 0), packet(1, 0), packet(2, 3000, marker=True)]
    assert released(LowDelayJitterBuffer(512, is_video=True), packets) == [(0, None), (1, None), (2, 0)]
    buffer = LowDelayJitterBuffer(512, is_video=True)
    frames = video_frames(2)
    lost = frames.pop(1)  # frame 0's middle packet, retransmitted after frame 1
    assert released(buffer, frames) == [(0, None), (2, None), (3, None), (4, None), (5, None)]
    frame = buffer.add(lost)[1]
    assert frame is not None and frame.timestamp == 0 and frame.data == b"xxx"
    assert buffer.add(packet(6, 6000))[1].timestamp == 3000  # type: ignore[union-attr]  (frame 1 was waiting)


def test_padding_is_dropped_not_decoded():
    buffer = LowDelayJitterBuffer(512, is_video=True)
    packets = [*video_frames(1), packet(3, 0, data=b""), packet(4, 0, data=b""), *video_frames(2)[3:]]
    for p in packets[3:]:
        p.sequence_number += 2 if p.timestamp else 0
    frames = [f for f in (buffer.add(p)[1] for p in packets) if f is not None]
    assert [(f.timestamp, f.data) for f in frames] == [(0, b"xxx"), (3000, b"xxx")]


def test_audio_leaves_at_once_and_a_lost_packet_leaves_no_lag():
    packets = [packet(seq, seq * 960) for seq in range(60) if seq != 20]
    got = released(LowDelayJitterBuffer(16, is_video=False), packets)
    lag = [seq - ts // 960 for seq, ts in got if ts is not None]
    assert lag == [0] * 59  # every packet as it arrives, before and after the lost one
    aiortc = released(JitterBuffer(16, prefetch=4), packets)  # what the receiver had: 4 packets, then 14
    assert [seq - ts // 960 for seq, ts in aiortc if ts is not None][-1] == 14


class Frames(MediaStreamTrack):
    """A video track that sends `count` frames, `every_s` apart."""

    kind = "video"

    def __init__(self, count: int, every_s: float) -> None:
        super().__init__()
        self.count, self.every_s, self.sent = count, every_s, 0
        self.sent_at: list[float] = []  # time.monotonic() when each frame went to the encoder

    async def recv(self) -> av.VideoFrame:
        if self.sent:
            await asyncio.sleep(self.every_s)
        self.sent_at.append(time.monotonic())
        frame = av.VideoFrame.from_ndarray(np.full((96, 128, 3), 40 * self.sent, np.uint8), format="rgb24")
        frame.pts, frame.time_base = self.sent * 90_000, fractions.Fraction(1, 90_000)
        self.sent = min(self.sent + 1, self.count)
        return frame


class TrackCatcher:
    """Stands in for the room's SpeakerSwitch: keeps the tracks a Peer receives."""

    def __init__(self) -> None:
        self.tracks: list[MediaStreamTrack] = []

    def add_track(self, participant: str, track: MediaStreamTrack) -> None:
        self.tracks.append(track)


def test_a_room_peer_decodes_each_video_frame_without_waiting_for_the_next(monkeypatch):
    # frames 1 s apart through a real aiortc connection into engine.rooms.base.Peer: with aiortc's buffer each
    # frame came out only when the next one's first packet arrived, a second late
    from engine.rooms.base import Peer

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])

    async def run() -> list[float]:
        catcher = TrackCatcher()
        peer = Peer("alice", None, catcher, receive=False)  # type: ignore[arg-type]
        sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        frames = Frames(count=3, every_s=1.0)
        sender.addTrack(frames)
        received: list[float] = []
        try:
            await sender.setLocalDescription(await sender.createOffer())
            answer = await peer.answer(sender.localDescription.sdp)
            await sender.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            (track,) = catcher.tracks
            for _ in range(2):
                await asyncio.wait_for(track.recv(), 10)
                received.append(time.monotonic())
        finally:
            await sender.close()
            await peer.close()
        return [got - sent for got, sent in zip(received, frames.sent_at, strict=False)]

    lags = asyncio.run(run())
    assert max(lags) < 0.3, lags  # each frame as it was sent, not a second late
