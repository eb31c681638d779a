"""The active speaker's media as two steady tracks the engine reads, whoever is speaking.

Every participant's received audio is metered (engine.rooms.speaker); frames of the participant chosen as
active speaker are forwarded to `SpeakerSwitch.audio` / `.video`, restamped onto one continuous clock, so
`engine.sources.WebRTCSource(audio=switch.audio, video=switch.video)` sees one uninterrupted speaker. When nobody
speaks (no one there, or a silent room) the audio track plays silence in real time, so the engine keeps its clock
and the avatar keeps listening.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from engine.rooms.speaker import ActiveSpeaker, LevelMeter

log = logging.getLogger(__name__)

AUDIO_RATE = 48_000  # what aiortc's decoders deliver (s16 stereo)
SILENCE_FRAME = 960  # 20 ms at 48 kHz
GAP_S = 0.1  # audio silent for this long -> the relay starts filling with silence
VIDEO_CLOCK = 90_000


class _RelayTrack(MediaStreamTrack):
    """A track fed with frames by `put` (on the loop), keeping at most `capacity` (the oldest is dropped)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._frames: deque[av.AudioFrame | av.VideoFrame] = deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self.forwarded = 0

    def put(self, frame: av.AudioFrame | av.VideoFrame) -> None:
        self._frames.append(frame)
        self.forwarded += 1
        self._wake.set()

    def stop(self) -> None:
        super().stop()
        self._wake.set()

    async def _wait(self, timeout: float | None) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return


class RelayAudioTrack(_RelayTrack):
    """The active speaker's audio (s16 stereo 48 kHz frames), or real-time silence when none arrives."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__(capacity=25)  # 0.5 s of 20 ms frames
        self._samples = 0  # the track's own clock, 48 kHz samples
        self._silence_due = time.monotonic() + GAP_S

    async def recv(self) -> av.AudioFrame:
        while self.readyState == "live":
            now = time.monotonic()
            if self._frames:
                self._silence_due = now + GAP_S
                frame = self._frames.popleft()
                assert isinstance(frame, av.AudioFrame)
                return self._stamp(frame)
            if now >= self._silence_due:
                self._silence_due = max(self._silence_due + SILENCE_FRAME / AUDIO_RATE, now - GAP_S)
                return self._stamp(_silence())
            await self._wait(self._silence_due - now)
        raise MediaStreamError

    def _stamp(self, frame: av.AudioFrame) -> av.AudioFrame:
        frame.pts, frame.time_base = self._samples, fractions.Fraction(1, frame.sample_rate)
        self._samples += frame.samples
        return frame


def _silence() -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 2 * SILENCE_FRAME), np.int16), format="s16", layout="stereo")
    frame.sample_rate = AUDIO_RATE
    return frame


class RelayVideoTrack(_RelayTrack):
    """The active speaker's video frames, stamped with the wall clock (90 kHz) when forwarded."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__(capacity=2)
        self._t0 = time.monotonic()

    def put(self, frame: av.AudioFrame | av.VideoFrame) -> None:
        frame.pts = round((time.monotonic() - self._t0) * VIDEO_CLOCK)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        super().put(frame)

    async def recv(self) -> av.VideoFrame:
        while self.readyState == "live":
            if self._frames:
                frame = self._frames.popleft()
                assert isinstance(frame, av.VideoFrame)
                return frame
            await self._wait(None)
        raise MediaStreamError


class SpeakerSwitch:
    """Meters every participant's audio and forwards the active speaker's audio and video."""

    def __init__(self, selector: ActiveSpeaker | None = None, window_s: float = 1.0) -> None:
        self.selector = selector or ActiveSpeaker()
        self.meter = LevelMeter(window_s)
        self.audio = RelayAudioTrack()
        self.video = RelayVideoTrack()
        self.speaker: str | None = None
        self.switches = 0
        self._pumps: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._participants: set[str] = set()

    def add_track(self, participant: str, track: MediaStreamTrack) -> None:
        """Start reading a participant's received audio or video track (on the loop)."""
        key = (participant, track.kind)
        old = self._pumps.pop(key, None)
        if old is not None:
            old.cancel()
        self._participants.add(participant)
        self._pumps[key] = asyncio.create_task(self._pump(participant, track), name=f"room-{track.kind}-{participant}")

    def remove(self, participant: str) -> None:
        """Forget a participant who left; another speaker is chosen at the next audio frame."""
        for kind in ("audio", "video"):
            pump = self._pumps.pop((participant, kind), None)
            if pump is not None:
                pump.cancel()
        self._participants.discard(participant)
        self.meter.remove(participant)
        self._update(time.monotonic())

    def _update(self, now: float) -> None:
        levels = {p: level for p, level in self.meter.levels_db(now).items() if p in self._participants}
        speaker = self.selector.update(levels, now)
        if speaker != self.speaker:
            log.info("active speaker: %s", speaker)
            self.speaker = speaker
            self.switches += 1

    async def _pump(self, participant: str, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.AudioFrame):
                    now = time.monotonic()
                    self.meter.add(participant, now, frame.to_ndarray())
                    self._update(now)
                    if participant == self.speaker:
                        self.audio.put(frame)
                elif isinstance(frame, av.VideoFrame) and participant == self.speaker:
                    self.video.put(frame)
        except MediaStreamError:
            log.debug("%s's %s track ended", participant, track.kind)

    async def close(self) -> None:
        """Stop every pump and both relay tracks; safe twice."""
        pumps = list(self._pumps.values())
        self._pumps.clear()
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        self.audio.stop()
        self.video.stop()
