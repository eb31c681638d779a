"""The engine as a participant of a built-in room (`reactdiff-room`): WebSocket signaling, one peer connection
per participant (full mesh, complete SDPs), reconnect with backoff. See engine.rooms.base for the interface.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from engine.rooms import messages as m
from engine.rooms.base import Peer, RoomClient, RoomError, RoomGone
from engine.rooms.messages import MAX_MESSAGE_BYTES, MessageError, encode_message
from engine.rooms.messages import parse_server_message as parse
from engine.rooms.sdp import NegotiationError, check_remote_sdp

log = logging.getLogger(__name__)

HTTP_REASONS = {
    403: "the room token is wrong (copy the whole URL that reactdiff-room printed)",
    404: "there is no such room (it may have expired or been closed); ask for a new room URL",
    429: "the room server is rate-limiting this address; wait a few seconds",
}


class RoomClosed(RoomGone):
    """The server closed the room (expired, shut down)."""


class BuiltinRoomClient(RoomClient):
    """A participant of a `reactdiff-room` room, with role "engine"."""

    peer_id: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    # --- connection ------------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Open the WebSocket and join: welcome received, offers to everyone there started."""
        where = f"{self.url.host}:{self.url.port}"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        try:
            self._ws = await self._session.ws_connect(
                self.url.ws_url, heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES, ssl=self.url.verify_tls
            )
        except aiohttp.WSServerHandshakeError as err:
            reason = HTTP_REASONS.get(err.status, f"the server refused the connection (HTTP {err.status})")
            raise (RoomClosed if err.status == 404 else RoomError)(f"room {self.url.room}: {reason}") from err
        except aiohttp.ClientConnectorCertificateError as err:
            raise RoomError(f"room server {where}: its TLS certificate is not trusted (self-signed? add "
                            "&insecure=1 to the room URL if you trust this server)") from err  # fmt: skip
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise RoomError(f"cannot reach the room server at {where} ({err.__class__.__name__}: {err})") from err
        await self._ws.send_str(encode_message(m.Join(name=self.url.display, role="engine")))
        welcome = await self._receive(self.join_timeout_s)
        if not isinstance(welcome, m.Welcome):
            raise RoomError(f"room {self.url.room}: no welcome from the server (got {welcome})")
        self.peer_id = welcome.id
        for peer in welcome.peers:
            self.negotiate(peer.id, self._offer(peer.id), "offer")
        log.info("joined room %s as %s with %d participant(s)", self.url.room, self.peer_id, len(welcome.peers))

    async def _receive(self, timeout: float | None) -> m.ServerMessage | None:
        """The next valid server message; None when the socket closed. Raises RoomClosed/RoomError."""
        assert self._ws is not None
        try:
            msg = await self._ws.receive(timeout=timeout)
        except TimeoutError as err:
            raise RoomError(f"room {self.url.room}: the server did not answer within {timeout:.0f} s") from err
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        try:
            message = parse(msg.data)
        except MessageError as err:
            log.warning("ignoring a bad message from the room server: %s", err)
            return m.Pong()
        if isinstance(message, m.ClosedNotice):
            raise RoomClosed(f"room {self.url.room} was closed by the server ({message.reason})")
        if isinstance(message, m.ErrorNotice) and self.peer_id is None:
            raise RoomError(f"room {self.url.room}: the server refused to let us join: {message.message}")
        return message

    async def join(self) -> None:
        try:
            await self._connect()
        except BaseException:
            await self._close_socket()
            raise
        self.watch_controls()

    async def _reset_connection(self) -> None:
        await self.drop_all_peers()
        await self._close_socket(keep_session=True)

    def _lost_message(self, seconds: float) -> str:
        return f"lost room {self.url.room}: no connection to the room server for {seconds:.0f} s"

    async def _serve_connection(self) -> None:
        while not self._closing:
            message = await self._receive(None)
            if message is None:
                return
            await self._handle(message)

    async def _handle(self, message: m.ServerMessage) -> None:
        """One server message; a participant's offer or answer is a negotiation step that can fail on its own."""
        match message:
            case m.RelayedOffer(sender=sender, sdp=sdp) if self.may_negotiate(sender):
                self.negotiate(sender, self._answer(sender, sdp), "answer")
            case m.RelayedAnswer(sender=sender, sdp=sdp):
                self.negotiate(sender, self._accept(sender, sdp), "accept")
            case m.PeerLeft(id=peer_id):  # closed aside: the server's next message (ClosedNotice) must not wait
                self.spawn(self.participant_left(peer_id), f"room-left-{peer_id}")
            case m.ErrorNotice(message=text):
                log.warning("room server: %s", text)

    # --- peers -----------------------------------------------------------------------------------------------

    def _new_peer(self, peer_id: str, *, offering: bool) -> Peer:
        peer = self.new_peer(peer_id, self.avatar_for_peer() if offering else None, receive=offering)
        self.open_channel(peer)
        return peer

    async def _offer(self, peer_id: str) -> None:
        sdp = await self._new_peer(peer_id, offering=True).offer()
        self._send(m.Offer(to=peer_id, sdp=sdp))

    async def _answer(self, peer_id: str, offer_sdp: str) -> None:
        check_remote_sdp(offer_sdp, "offer")  # before making a connection for it (Peer.answer checks it again)
        sdp = await self._new_peer(peer_id, offering=False).answer(offer_sdp, self.avatar_for_peer())
        self._send(m.Answer(to=peer_id, sdp=sdp))

    async def _accept(self, peer_id: str, answer_sdp: str) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            raise NegotiationError("an answer arrived but no offer of ours is waiting (no connection)")
        await peer.accept(answer_sdp)

    def _send(self, message: m.ClientMessage) -> None:
        ws = self._ws
        if ws is not None and not ws.closed:
            self.spawn(ws.send_str(encode_message(message)), f"room-send-{type(message).__name__}")

    def send_stats(self, stats: dict[str, float | str | None]) -> None:
        self._send(m.PublishStats(stats=stats))

    # --- leaving ---------------------------------------------------------------------------------------------

    async def _close_socket(self, *, keep_session: bool = False) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self.peer_id = None
        if self._session is not None and not keep_session:
            await self._session.close()
            self._session = None

    async def _disconnect(self) -> None:
        if self._ws is not None and not self._ws.closed:
            try:
                await self._ws.send_str(encode_message(m.Leave()))
            except (aiohttp.ClientError, ConnectionError):
                log.debug("could not say goodbye to the room server")
        await self._close_socket()
