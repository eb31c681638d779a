"""What every room client shares: errors, the reconnect policy, peer connections that publish the avatar, receive a
participant's media into the speaker switch and carry the `reactions` data channel.

A client (built-in room or Janus) runs on one asyncio loop:

    client = BuiltinRoomClient(url, avatar_track)
    await client.join()              # RoomError with a one-line reason if the room cannot be joined
    task = asyncio.create_task(client.serve())   # reconnects with backoff; RoomError when the room is lost
    client.send_reaction(encoded)    # to every participant's open `reactions` channel
    await client.close()             # leaves cleanly; safe twice

With a `controls` holder (engine.listener.ListenerControl), a participant's page may change who listens with a
control message on its `reactions` channel (engine.rooms.control): checked, rate-limited per participant, and the
listener it makes is sent to every page. Without one, what participants send on the channel is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from engine.listener import ListenerError
from engine.rooms.control import ControlError, decode_control, encode_state
from engine.rooms.jitter import install_low_delay_buffer
from engine.rooms.ratelimit import TokenBucket
from engine.rooms.reactions import CHANNEL_ID, CHANNEL_LABEL
from engine.rooms.sdp import NegotiationError, check_remote_sdp
from engine.rooms.switch import SpeakerSwitch
from engine.rooms.urls import RoomURL
from renderer.track import AvatarVideoTrack

if TYPE_CHECKING:
    from engine.listener import ListenerChange, ListenerControl

log = logging.getLogger(__name__)

MAX_BUFFERED_BYTES = 64 * 1024  # a channel this far behind skips reaction frames rather than queueing them
CLOSE_TIMEOUT_S = 5.0  # aiortc's close can wait forever on a transport the other side dropped (aiortc#283)


class RoomError(RuntimeError):
    """The room cannot be joined or was lost; the message is one line meant for the user."""


class RoomGone(RoomError):
    """The room no longer exists (closed, expired, destroyed): reconnecting cannot help."""


@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff after the connection to a joined room drops: a quick first retry, then one every max_delay_s, so
    the engine is back at most max_delay_s (plus one join) after a restarted server is."""

    first_delay_s: float = 0.25
    """Delay before the first retry (a dropped socket to a server still up); doubled after every failed retry ..."""
    max_delay_s: float = 1.5
    """... up to this: back within 3 s of the server (issue 11) with a Janus join (about 1 s here) included. One
    try in 1.5 s stays under the room server's per-address connection limit (one a second), and a refused
    connection costs next to nothing."""
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


@dataclass(frozen=True)
class PeerLimits:
    """What one participant may ask of the engine: a hostile or broken peer costs only its own connection."""

    negotiations_per_min: float = 6.0
    """Offers (new or renegotiated connections) accepted per participant per minute on average ..."""
    negotiation_burst: int = 3
    """... with bursts of this many; offers beyond are refused (counted) and the current connection is kept."""
    connect_timeout_s: float = 20.0
    """A negotiated connection that is not connected this long after its offer/answer is closed."""
    controls_per_s: float = 4.0
    """Listener control messages taken from one participant per second on average (a page sends a dragged
    slider's value at most 4 times a second) ..."""
    control_burst: int = 4
    """... with bursts of this many; messages beyond are dropped unread (counted)."""


@dataclass
class PeerCounters:
    """What happened to the participants' connections (the engine's `--stats` and the room page show them)."""

    negotiations: int = 0
    """Offers and answers handled (each one a new peer connection or an answer to ours)."""
    negotiation_failures: int = 0
    """Offers or answers that could not be used (malformed, out of order): that peer's connection was closed."""
    negotiations_refused: int = 0
    """Offers over a participant's rate limit (PeerLimits), ignored."""
    connect_timeouts: int = 0
    """Connections closed because they never connected within PeerLimits.connect_timeout_s."""
    connections_failed: int = 0
    """Connections that failed after connecting (ICE consent lost) and were closed."""
    controls: int = 0
    """Listener control messages applied (engine.rooms.control)."""
    controls_refused: int = 0
    """Control messages refused: malformed, out of range, an unknown persona (the sender's connection stays)."""
    controls_dropped: int = 0
    """Control messages over a participant's rate limit (PeerLimits), dropped unread."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Peer:
    """One peer connection: the avatar goes out, the participant's audio/video come in, plus `reactions`.

    `on_failed(peer)` is called (on the loop) when the connection fails, so the client can close it."""

    def __init__(
        self, peer_id: str, avatar: MediaStreamTrack | None, switch: SpeakerSwitch, *, receive: bool,
        on_failed: Callable[[Peer], None] | None = None,
    ) -> None:  # fmt: skip
        self.id = peer_id
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel: RTCDataChannel | None = None
        self.connected = asyncio.Event()  # set once the connection is up (or has failed: see `failed`)
        self.failed = False
        self._avatars = [avatar] if avatar is not None else []  # stopped by close(): see there
        if avatar is not None:
            self.pc.addTrack(avatar)
        if receive:
            self.pc.addTransceiver("audio", direction="recvonly")
            if avatar is None:
                self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            log.debug("peer %s: receiving %s", peer_id, track.kind)
            for transceiver in self.pc.getTransceivers():  # before its first packet: no frame waits for later ones
                if transceiver.receiver.track is track:
                    install_low_delay_buffer(transceiver.receiver)
            switch.add_track(peer_id, track)

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            state = self.pc.connectionState
            if state == "connected":
                self.connected.set()
            elif state == "failed":
                self.failed = True
                self.connected.set()
                if on_failed is not None:
                    on_failed(self)

    def open_channel(
        self, on_open: Callable[[], None] | None = None, on_message: Callable[[bytes | str], None] | None = None
    ) -> None:
        """The `reactions` channel (negotiated out of band with a fixed id, so either side may offer); `on_open()`
        once it is open, `on_message(data)` for what the participant sends on it."""
        self.channel = self.pc.createDataChannel(CHANNEL_LABEL, negotiated=True, id=CHANNEL_ID)
        if on_open is not None:
            self.channel.on("open", on_open)
        if on_message is not None:
            self.channel.on("message", on_message)

    async def offer(self) -> str:
        """A complete offer SDP (aiortc gathers every candidate in setLocalDescription)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, offer_sdp: str, avatar: MediaStreamTrack | None = None) -> str:
        """Accept an offer (adding the avatar to its video section) and return a complete answer SDP;
        NegotiationError if the offer cannot make a connection (checked before aiortc sees it)."""
        if avatar is not None:
            self._avatars.append(avatar)
        check_remote_sdp(offer_sdp, "offer")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        offered_video = any(t.kind == "video" for t in self.pc.getTransceivers())
        if avatar is not None and offered_video:
            self.pc.addTrack(avatar)
        elif avatar is not None:
            log.warning("peer %s offered no video section; it cannot receive the avatar", self.id)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        """Take the answer to our offer; NegotiationError if we made no offer or the answer cannot be used."""
        if self.pc.signalingState != "have-local-offer":
            state = self.pc.signalingState
            raise NegotiationError(f"an answer arrived but no offer of ours is waiting (state {state})")
        check_remote_sdp(answer_sdp, "answer")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def send(self, data: bytes) -> bool:
        """Send on the reactions channel if it is open and not backed up."""
        channel = self.channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount > MAX_BUFFERED_BYTES:
            return False
        channel.send(data)
        return True

    async def close(self) -> None:
        """Close the connection; never raises (this peer's trouble must not stop the others being closed)."""
        self.connected.set()  # a closed connection waits for nothing: its watcher ends now, not at its timeout
        try:
            await asyncio.wait_for(self.pc.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("closing the connection to %s took over %.0f s; abandoned", self.id, CLOSE_TIMEOUT_S)
        except Exception as err:  # aiortc on a half-made connection; the room client goes on
            log.warning("closing the connection to %s failed (%s: %s)", self.id, err.__class__.__name__, err)
        for avatar in self._avatars:  # aiortc stops a sender's track only if it started sending; the avatar's
            avatar.stop()  # subscription would stay, fed a frame at every render, for a connection never made


class RoomClient(ABC):
    """A participant that publishes `avatar` and feeds the active speaker into `switch` (see module docstring)."""

    def __init__(
        self, url: RoomURL, avatar: AvatarVideoTrack, *, switch: SpeakerSwitch | None = None,
        reconnect: ReconnectPolicy | None = None, join_timeout_s: float = 10.0, limits: PeerLimits | None = None,
        controls: ListenerControl | None = None,
    ) -> None:  # fmt: skip
        self.url, self.avatar = url, avatar
        self.controls = controls
        self.switch = switch or SpeakerSwitch()
        self.reconnect = reconnect or ReconnectPolicy()
        self.join_timeout_s = join_timeout_s
        self.limits = limits or PeerLimits()
        self.counters = PeerCounters()
        self.peers: dict[str, Peer] = {}
        self.reconnects = 0
        self._buckets: dict[str, TokenBucket] = {}  # participant id -> its negotiation rate limit
        self._control_buckets: dict[str, TokenBucket] = {}  # participant id -> its control message rate limit
        self._unwatch_controls: Callable[[], None] | None = None
        self._steps: dict[str, asyncio.Lock] = {}  # participant id -> one negotiation step at a time, in order
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closers: set[asyncio.Task[None]] = set()  # connections being closed: awaited, never cancelled

    def avatar_for_peer(self) -> MediaStreamTrack:
        """The avatar for one more peer connection: its own frames, made by the render thread (renderer.track)."""
        return self.avatar.subscribe()

    def spawn(self, coro: Any, name: str) -> None:
        """Run a coroutine owned by the client (cancelled by close(); its failure is logged)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s failed: %s", task.get_name(), task.exception())

    def new_peer(self, peer_id: str, avatar: MediaStreamTrack | None, *, receive: bool) -> Peer:
        """A peer connection for `peer_id`, replacing (and closing) any it had: one connection per participant."""
        old = self.peers.pop(peer_id, None)
        if old is not None:
            self._close_peer(old)
        peer = Peer(peer_id, avatar, self.switch, receive=receive, on_failed=self._peer_failed)
        self.peers[peer_id] = peer
        return peer

    def may_negotiate(self, peer_id: str) -> bool:
        """Whether `peer_id` is within its negotiation rate limit (PeerLimits); a refusal is counted and logged."""
        limits = self.limits
        bucket = self._buckets.setdefault(
            peer_id, TokenBucket(limits.negotiations_per_min / 60, limits.negotiation_burst)
        )
        if bucket.take():
            return True
        self.counters.negotiations_refused += 1
        log.warning("participant %s renegotiates too often; its offer is ignored", peer_id)
        return False

    def negotiate(self, peer_id: str, step: Coroutine[Any, Any, None], what: str) -> None:
        """Run one negotiation step (an answer to an offer, our offer, taking an answer) for `peer_id` as a task:
        whatever goes wrong closes that participant's connection only, is counted and logged. The steps of a
        participant who has left (`forget`) are skipped, or undone if under way."""
        lock = self._steps.setdefault(peer_id, asyncio.Lock())
        self.spawn(self._negotiate(peer_id, lock, step, what), f"room-{what}-{peer_id}")

    async def _negotiate(self, peer_id: str, lock: asyncio.Lock, step: Coroutine[Any, Any, None], what: str) -> None:
        self.counters.negotiations += 1
        try:
            async with lock:  # asyncio.Lock wakes waiters in order
                if self._steps.get(peer_id) is lock:  # else they left while this step waited its turn
                    await step
        except Exception as err:  # a remote SDP can make aiortc raise anything; it must cost only this peer
            if self._steps.get(peer_id) is lock:  # (one who left meanwhile, closing the connection, failed nothing)
                self.counters.negotiation_failures += 1
                log.warning("participant %s: %s failed (%s: %s); closing its connection only",
                            peer_id, what, err.__class__.__name__, err)  # fmt: skip
                log.debug("negotiation with %s failed", peer_id, exc_info=True)
            await self.drop_peer(peer_id)
            return
        finally:
            step.close()  # a step cancelled before its turn never ran: close it rather than leave it un-awaited
        if self._steps.get(peer_id) is not lock:  # they left while it ran: the connection it made goes too
            await self.drop_peer(peer_id)
            return
        peer = self.peers.get(peer_id)
        if peer is not None and what != "accept":  # a new connection (ours or theirs): it must come up in time
            self.spawn(self._expect_connected(peer), f"room-watch-{peer_id}")

    async def _expect_connected(self, peer: Peer) -> None:
        try:
            await asyncio.wait_for(peer.connected.wait(), self.limits.connect_timeout_s)
        except TimeoutError:
            if self.peers.get(peer.id) is peer:
                self.counters.connect_timeouts += 1
                log.warning("participant %s did not connect within %.0f s; closing its connection",
                            peer.id, self.limits.connect_timeout_s)  # fmt: skip
                await self.drop_peer(peer.id)

    def _peer_failed(self, peer: Peer) -> None:
        if self.peers.get(peer.id) is peer and not self._closing:
            self.counters.connections_failed += 1
            log.warning("the connection to participant %s failed; closing it", peer.id)
            self.spawn(self.drop_peer(peer.id), f"room-drop-{peer.id}")

    def forget(self, peer_id: str) -> None:
        """`peer_id` left the room: its rate limits go too (drop_peer keeps them, so failing does not reset them)."""
        self._buckets.pop(peer_id, None)
        self._control_buckets.pop(peer_id, None)
        self._steps.pop(peer_id, None)

    async def participant_left(self, peer_id: str) -> None:
        """Forget `peer_id` and close its connection: now, or when its negotiation step under way ends (closed
        in the middle of one, aiortc can still gather afterwards, and aioice then never closes those sockets)."""
        step = self._steps.get(peer_id)
        self.forget(peer_id)
        if step is None or not step.locked():
            await self.drop_peer(peer_id)

    # --- who listens: control messages in, the listener out ------------------------------------------------------

    def open_channel(self, peer: Peer) -> None:
        """Open `peer`'s reactions channel: it gets the listener when it opens, and its messages are controls. (The
        handlers name the participant, not the Peer: a channel aiortc still holds keeps no closed connection alive.)"""
        peer_id = peer.id
        peer.open_channel(
            on_open=lambda: self._send_listener(peer_id), on_message=lambda data: self._on_control(peer_id, data)
        )

    def watch_controls(self) -> None:
        """Send the listener to every page after each change (called on the client's loop, once joined)."""
        if self.controls is None or self._unwatch_controls is not None:
            return
        loop = asyncio.get_running_loop()

        def changed(change: ListenerChange) -> None:  # in the changing thread: hand it to the loop
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._broadcast_listener, change)

        self._unwatch_controls = self.controls.subscribe(changed)

    def _listener_message(self, change: ListenerChange | None = None) -> bytes | None:
        if self.controls is None:
            return None
        return encode_state(change or self.controls.current(), self.controls.choices.names)

    def _send_listener(self, peer_id: str) -> None:
        message, peer = self._listener_message(), self.peers.get(peer_id)
        if message is not None and peer is not None:
            peer.send(message)

    def _broadcast_listener(self, change: ListenerChange) -> None:
        message = self._listener_message(change)
        if message is not None and not self._closing:
            self.send_reaction(message)

    def _on_control(self, peer_id: str, data: bytes | str) -> None:
        """A message from `peer_id`'s page: within its rate limit, a checked change of who listens; anything
        else is counted and costs the sender nothing more (its connection stays, as everyone else's)."""
        if self.controls is None:
            return  # nothing to control: the channel only carries frames out
        limits = self.limits
        bucket = self._control_buckets.setdefault(peer_id, TokenBucket(limits.controls_per_s, limits.control_burst))
        if not bucket.take():
            if self.counters.controls_dropped % 100 == 0:  # one line per 100, not one per message of a flood
                log.warning("participant %s sends listener controls too often; the excess is dropped", peer_id)
            self.counters.controls_dropped += 1
            return
        try:
            message = decode_control(data)
            persona = None if isinstance(message.persona, msgspec.UnsetType) else message.persona
            self.controls.change(persona=persona, expressiveness=message.expressiveness, by=peer_id)
        except (ControlError, ListenerError) as err:
            self.counters.controls_refused += 1
            log.warning("participant %s: listener control refused: %s", peer_id, err)
            return
        self.counters.controls += 1

    def send_reaction(self, data: bytes) -> int:
        """Send one encoded reaction frame to every peer whose channel is open; returns how many got it."""
        return sum(peer.send(data) for peer in list(self.peers.values()))

    async def drop_peer(self, peer_id: str) -> None:
        """Close `peer_id`'s connection (if any) and stop listening to it."""
        peer = self.peers.pop(peer_id, None)
        self.switch.remove(peer_id)
        if peer is not None:
            await asyncio.shield(self._close_peer(peer))  # the caller cancelled, the close still ends (close())

    def _close_peer(self, peer: Peer) -> asyncio.Task[None]:
        """Close `peer` in a task of its own that close() waits for rather than cancels: a connection cut off
        in the middle of closing would keep its sockets and its avatar subscription (Peer.close is bounded)."""
        task = asyncio.create_task(peer.close(), name=f"room-close-{peer.id}")
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)
        return task

    async def drop_all_peers(self) -> None:
        """Every connection closed (all at once) and every participant forgotten (on leaving, and before a
        reconnect, which meets them afresh): a negotiation step under way closes what it made when it ends."""
        await asyncio.gather(*(self.participant_left(peer_id) for peer_id in set(self.peers) | set(self._steps)))

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
        """Reconnect by the policy: RoomGone at once if the room no longer exists, RoomError once it gives up."""
        lost_at = time.monotonic()
        log.warning("lost the room; reconnecting (for up to %.0f s)", self.reconnect.give_up_s)
        for delay in self.reconnect.delays():
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except RoomGone:
                raise
            except RoomError as err:
                await self._reset_connection()
                log.info("reconnect failed: %s", err)
                continue
            self.reconnects += 1
            log.warning("back in the room after %.1f s", time.monotonic() - lost_at)
            return
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
        if self._unwatch_controls is not None:
            self._unwatch_controls()
        await self._disconnect()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._closers)
        await self.drop_all_peers()
        await self.switch.close()
