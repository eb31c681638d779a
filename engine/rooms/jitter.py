"""The receive side's jitter buffer: every received frame goes to its decoder as soon as it is complete.

aiortc's own `JitterBuffer` (1.16) hands a frame on only once packets of later frames have arrived: a video frame
waits for the next frame's first packet (a frame interval: 40 ms at 25 fps) and audio keeps four packets in hand
(prefetch 4: 80 ms). Worse, one lost audio packet (Opus is not retransmitted) leaves it waiting until it is full,
and from then on it hands on one packet per packet received with 14 still in hand: 280 ms for the rest of the
call. `LowDelayJitterBuffer` keeps aiortc's reassembly and misorder rules but releases:

- video: a frame once its packets from the buffer's start carry one timestamp and end with the RTP marker bit
  (the last packet of a VP8 or H.264 frame), or, as aiortc does, once a later frame's packet shows it has ended;
- audio: every packet at once (an Opus packet is a whole frame), skipping a missing one as soon as a later packet
  is there (it will not be sent again), so nothing piles up.

Packets with no payload (a sender's padding for bandwidth probing) are dropped, not handed on as frames.
`install_low_delay_buffer(receiver)` puts one into an aiortc `RTCRtpReceiver` before any packet arrived.
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)

AUDIO_CAPACITY, VIDEO_CAPACITY = 16, 512  # packets, as aiortc sizes them
_RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"  # aiortc 1.16's (name-mangled) attribute


class LowDelayJitterBuffer(JitterBuffer):
    """aiortc's JitterBuffer with no prefetch: see the module docstring."""

    def __init__(self, capacity: int, *, is_video: bool) -> None:
        super().__init__(capacity, prefetch=0, is_video=is_video)

    def _packet(self, count: int) -> RtpPacket | None:
        """The packet `count` places after the buffer's start (None: not received)."""
        assert self._origin is not None
        return self._packets[(self._origin + count) % self._capacity]

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        while (first := self._packet(0)) is not None and not first._data:  # type: ignore[attr-defined]
            self.remove(1)  # padding: nothing to decode
        if first is None:
            return None if self._is_video else self._skip_lost_audio()
        count = self._video_frame_packets(first) if self._is_video else 1
        if count is None:
            return None
        packets = [self._packet(i) for i in range(count)]
        self.remove(count)
        return JitterFrame(data=b"".join(p._data for p in packets), timestamp=first.timestamp)  # type: ignore

    def _video_frame_packets(self, first: RtpPacket) -> int | None:
        """How many packets the video frame at the start has, once it is complete (None: not yet)."""
        count, last = 1, first
        while not last.marker:
            packet = self._packet(count) if count < self._capacity else None
            if packet is None:
                return None  # its next packet is missing (a retransmission may come), or no end seen yet
            if packet.timestamp != first.timestamp:
                return count  # a later frame has begun: this one is complete
            count, last = count + 1, packet
        return count

    def _skip_lost_audio(self) -> JitterFrame | None:
        """The audio packet at the start is missing: hand on the next one there is (None if none is)."""
        for count in range(1, self._capacity):
            if self._packet(count) is not None:
                self.remove(count)
                return self._remove_frame(0)
        return None


def install_low_delay_buffer(receiver: Any) -> bool:
    """Give an aiortc RTCRtpReceiver a LowDelayJitterBuffer (before its first packet); False if this aiortc keeps
    its buffer elsewhere (the receiver then runs with aiortc's own, and a debug line says so)."""
    if not isinstance(getattr(receiver, _RECEIVER_BUFFER, None), JitterBuffer):
        log.debug("this aiortc's RTCRtpReceiver has no %s: its own jitter buffer stays", _RECEIVER_BUFFER)
        return False
    video = receiver.track.kind == "video"
    buffer = LowDelayJitterBuffer(VIDEO_CAPACITY if video else AUDIO_CAPACITY, is_video=video)
    setattr(receiver, _RECEIVER_BUFFER, buffer)
    return True
