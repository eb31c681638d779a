"""What every room client shares: errors, the reconnect policy, peer connections that publish the avatar, receive a
participant's media into the speaker switch and carry the `reactions` data channel.

A client (built-in room or Janus) runs on one asyncio loop:

    client = BuiltinRoomClient(url, avatar_track)
    await client.join()              # RoomError with a one-line reason if the room cannot be joined
    task = asyncio.create_task(client.serve())   # reconnects with backoff; RoomError when the room is lost
    client.send_reaction(encoded)    # to every participant's open `reactions` channel
    await client.close()             # leaves cleanly; safe twice
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from engine.rooms.reactions import CHANNEL_ID, CHANNEL_LABEL
from engine.rooms.switch import SpeakerSwitch
from engine.rooms.urls import RoomURL

log = logging.getLogger(__name__)

MAX_BUFFERED_BYTES = 64 * 1024  # a channel this far behind skips reaction frames rather than queueing them


class OwnFrameTrack(MediaStreamTrack):
    """One peer's copy of a shared video track.

    aiortc encodes each sender's frames in a worker thread, and PyAV frames are not safe to reformat from two
    threads at once (it crashes), so every peer connection gets its own copy of each frame (a 256x256 RGB frame
    is a 200 kB memcpy on the loop)."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source

    async def recv(self) -> av.VideoFrame:
        frame = await self._source.recv()
        assert isinstance(frame, av.VideoFrame)
        copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
        copy.pts, copy.time_base = frame.pts, frame.time_base
        return copy

    def stop(self) -> None:
        super().stop()
        self._source.stop()


class RoomError(RuntimeError):
    """The room cannot be joined or was lost; the message is one line meant for the user."""


class RoomGone(RoomError):
    """The room no longer exists (closed, expired, destroyed): reconnecting cannot help."""


@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff after the connection to a joined room drops."""

    first_delay_s: float = 0.5
    """Delay before the first retry; doubled after every failed retry ..."""
    max_delay_s: float = 8.0
    """... up to this."""
    give_up_s: float = 60.0
    """Total time without a connection after which the room counts as lost."""

    def delays(self) -> list[float]:
        """The successive waits, summing to at most give_up_s."""
        out, delay, total = [], self.first_delay_s, 0.0
        while total + delay <= self.give_up_s:
            out.append(delay)
            total += delay
            delay = min(self.max_delay_s, 2 * delay)
        return out


class Peer:
    """One peer connection: the avatar goes out, the participant's audio/video come in, plus `reactions`."""

    def __init__(self, peer_id: str, avatar: MediaStreamTrack | None, switch: SpeakerSwitch, *, receive: bool) -> None:
        self.id = peer_id
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel: RTCDataChannel | None = None
        if avatar is not None:
            self.pc.addTrack(avatar)
        if receive:
            self.pc.addTransceiver("audio", direction="recvonly")
            if avatar is None:
                self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            log.debug("peer %s: receiving %s", peer_id, track.kind)
            switch.add_track(peer_id, track)

    def open_channel(self, *, negotiated: bool = True) -> None:
        """The `reactions` channel (negotiated out of band with a fixed id, so either side may offer)."""
        if negotiated:
            self.channel = self.pc.createDataChannel(CHANNEL_LABEL, negotiated=True, id=CHANNEL_ID)
        else:
            self.channel = self.pc.createDataChannel(CHANNEL_LABEL)

    async def offer(self) -> str:
        """A complete offer SDP (aiortc gathers every candidate in setLocalDescription)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, offer_sdp: str, avatar: MediaStreamTrack | None = None) -> str:
        """Accept an offer (adding the avatar to its video section) and return a complete answer SDP."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        offered_video = any(t.kind == "video" for t in self.pc.getTransceivers())
        if avatar is not None and offered_video:
            self.pc.addTrack(avatar)
        elif avatar is not None:
            log.warning("peer %s offered no video section; it cannot receive the avatar", self.id)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def send(self, data: bytes) -> bool:
        """Send on the reactions channel if it is open and not backed up."""
        channel = self.channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount > MAX_BUFFERED_BYTES:
            return False
        channel.send(data)
        return True

    async def close(self) -> None:
        await self.pc.close()


class RoomClient(ABC):
    """A participant that publishes `avatar` and feeds the active speaker into `switch` (see module docstring)."""

    def __init__(
        self, url: RoomURL, avatar: MediaStreamTrack, *, switch: SpeakerSwitch | None = None,
        reconnect: ReconnectPolicy | None = None, join_timeout_s: float = 10.0,
    ) -> None:  # fmt: skip
        self.url, self.avatar = url, avatar
        self.switch = switch or SpeakerSwitch()
        self.reconnect = reconnect or ReconnectPolicy()
        self.join_timeout_s = join_timeout_s
        self.peers: dict[str, Peer] = {}
        self.reconnects = 0
        self._relay = MediaRelay()  # one avatar track, one subscriber per peer connection
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def avatar_for_peer(self) -> MediaStreamTrack:
        return OwnFrameTrack(self._relay.subscribe(self.avatar, buffered=False))

    def spawn(self, coro: Any, name: str) -> None:
        """Run a coroutine owned by the client (cancelled by close(); its failure is logged)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s failed: %s", task.get_name(), task.exception())

    def send_reaction(self, data: bytes) -> int:
        """Send one encoded reaction frame to every peer whose channel is open; returns how many got it."""
        return sum(peer.send(data) for peer in list(self.peers.values()))

    async def drop_peer(self, peer_id: str) -> None:
        peer = self.peers.pop(peer_id, None)
        self.switch.remove(peer_id)
        if peer is not None:
            await peer.close()

    async def drop_all_peers(self) -> None:
        for peer_id in list(self.peers):
            await self.drop_peer(peer_id)

    @abstractmethod
    async def join(self) -> None:
        """Connect and join; raises RoomError with a one-line reason."""

    async def serve(self) -> None:
        """Take part until close() (returns) or the room is lost or closed (RoomError); reconnects with backoff."""
        while not self._closing:
            await self._serve_connection()
            if self._closing:
                return
            await self._reset_connection()
            await self._rejoin()

    async def _rejoin(self) -> None:
        lost_at = time.monotonic()
        for delay in self.reconnect.delays():
            log.warning("lost the room; reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)
            try:
                await self._connect()
                self.reconnects += 1
                return
            except RoomGone:
                raise
            except RoomError as err:
                await self._reset_connection()
                log.warning("reconnect failed: %s", err)
        raise RoomError(self._lost_message(time.monotonic() - lost_at))

    @abstractmethod
    async def _connect(self) -> None:
        """Open the signaling connection and join the room; RoomError (RoomGone when it no longer exists)."""

    @abstractmethod
    async def _serve_connection(self) -> None:
        """Handle signaling until the connection drops (returns) or the room is gone (RoomGone)."""

    @abstractmethod
    async def _reset_connection(self) -> None:
        """Drop the peers and the dead signaling connection, keeping what a reconnect reuses."""

    @abstractmethod
    def _lost_message(self, seconds: float) -> str:
        """The one-line error once reconnecting gave up after `seconds`."""

    @abstractmethod
    def send_stats(self, stats: dict[str, float | str | None]) -> None:
        """Show the engine's live stats to the other participants (where the room supports it)."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Leave the room and close the signaling connection."""

    async def close(self) -> None:
        """Leave cleanly: signaling, peer connections, pumps and tasks; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        await self._disconnect()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.drop_all_peers()
        await self.switch.close()
