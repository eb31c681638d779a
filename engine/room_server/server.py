"""The built-in room server: rooms with a random token, a web page, and WebSocket signaling for a full mesh.

    server = RoomServer(ServerConfig(host="127.0.0.1", port=8080))
    await server.start()
    room = server.create_room()          # room.url(server.base_url) is what participants open
    ...
    await server.stop()

The server never touches media: it relays offers, answers (complete SDPs: aiortc has no trickle ICE) and the
engine's stats between the participants of one room. Boundary checks: room id and token (constant-time compare)
on the page and the WebSocket, the Origin of browser WebSockets (same origin or `allowed_origins`), the message
size (aiohttp closes bigger frames), the schema of every message (engine.rooms.messages), a token-bucket rate
limit per connection and per client address, and a participant cap.

A room expires once it has been empty for `idle_timeout_s` after its last participant left. A room nobody has
joined yet does not expire: a URL printed or handed out keeps working until it has been used (it counts towards
`max_rooms`, and the admin API can close it). With `admin_token` set, an HTTP API makes and closes rooms:

    curl -X POST -H "Authorization: Bearer $ADMIN" http://HOST:PORT/api/rooms     # 201 {"id": ..., "url": ...}
    curl -X DELETE -H "Authorization: Bearer $ADMIN" http://HOST:PORT/api/rooms/ROOM   # 204
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import ssl
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web

from engine.rooms import messages as m
from engine.rooms.messages import MAX_MESSAGE_BYTES, MessageError, encode_message, parse_client_message
from engine.rooms.ratelimit import TokenBucket
from engine.rooms.urls import ROOM_ID_RE

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0  # a socket must send "join" this soon after connecting
STATIC_DIR = Path(str(resources.files("engine.room_server") / "static"))
VENDORED = ("vendor/msgpack.min.js",)  # from npm by scripts/vendor_js.sh (make setup); the page decodes reactions


@dataclass(frozen=True)
class ServerConfig:
    """How `reactdiff-room` runs."""

    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 for a LAN; then use TLS so browsers allow camera and mic)."""
    port: int = 8080
    """TCP port (0: any free port, see RoomServer.port)."""
    public_host: str | None = None
    """Host name to print in room URLs (None: `host`)."""
    idle_timeout_s: float = 600.0
    """A room is closed once it has been empty this long after its last participant left."""
    max_rooms: int = 100
    """Rooms at once (a room nobody joined yet counts too)."""
    admin_token: str | None = None
    """Bearer token of the admin API (POST /api/rooms makes a room, DELETE /api/rooms/ROOM closes one); None: off."""
    max_participants: int = 8
    """Per room; a full mesh grows as n^2, so keep it small."""
    rate_per_s: float = 20.0
    """Messages per second a connection may send on average ..."""
    rate_burst: int = 60
    """... with bursts of this many (a newcomer sends one offer per participant)."""
    connects_per_min: float = 60.0
    """WebSocket connections per minute from one client address."""
    allowed_origins: tuple[str, ...] = ()
    """Extra Origins allowed to open the WebSocket (the page's own origin always is)."""
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    """TLS for https/wss (see engine.room_server.tls)."""


@dataclass
class Participant:
    id: str
    name: str
    role: m.Role
    ws: web.WebSocketResponse

    def describe(self) -> m.PeerInfo:
        return m.PeerInfo(id=self.id, name=self.name, role=self.role)


@dataclass
class Room:
    """One room: its id, its token and who is in it."""

    id: str
    token: str
    participants: dict[str, Participant] = field(default_factory=dict)
    idle_since: float | None = None
    """time.monotonic() when its last participant left; None while someone is in it or before anyone joined."""

    def url(self, base_url: str) -> str:
        """The address participants open (base_url: http(s)://HOST:PORT)."""
        return f"{base_url}/r/{self.id}?token={self.token}"

    def token_ok(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())


async def _send(participant: Participant, message: m.ServerMessage) -> None:
    """Send one message; a participant whose socket is already gone is skipped (their own handler cleans up)."""
    if participant.ws.closed:
        return
    try:
        await participant.ws.send_str(encode_message(message))
    except ConnectionError:
        log.debug("could not send %s to %s: connection lost", type(message).__name__, participant.id)


class RoomLimitError(RuntimeError):
    """The server already holds `max_rooms` rooms."""


class RoomServer:
    """The aiohttp application and the rooms it serves."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.rooms: dict[str, Room] = {}
        self._connects: dict[str, TokenBucket] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.app = self._make_app()

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_get("/r/{room}", self._page)
        app.router.add_get("/ws/{room}", self._websocket)
        app.router.add_post("/api/rooms", self._api_create)
        app.router.add_delete("/api/rooms/{room}", self._api_close)
        app.router.add_static("/static/", STATIC_DIR)
        return app

    async def start(self) -> None:
        """Listen on config.host:config.port (port 0 picks a free one: see `port`)."""
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=self.config.ssl_context)
        await self._site.start()
        self._reaper = asyncio.create_task(self._expire_loop(), name="reactdiff-room-expiry")
        for name in VENDORED:
            if not (STATIC_DIR / name).is_file():
                log.warning("the room page's %s is missing, so browsers will not decode the avatar's reactions "
                            "(the video still works); run `make setup` or scripts/vendor_js.sh", name)  # fmt: skip
        log.info("reactdiff-room listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close every room (participants are told) and stop listening; safe to call twice."""
        for room_id in list(self.rooms):
            await self.close_room(room_id, "the server is shutting down")
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The port actually listened on."""
        assert self._runner is not None, "start() the server first"
        for address in self._runner.addresses:
            return int(address[1])
        raise RuntimeError("the server is not listening")

    @property
    def base_url(self) -> str:
        scheme = "https" if self.config.ssl_context is not None else "http"
        host = self.config.public_host or self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}"

    # --- rooms ---------------------------------------------------------------------------------------------------

    def create_room(self, room_id: str | None = None, token: str | None = None) -> Room:
        """A new room with a random id and token, or the given ones (a restarted server keeping a room's URL,
        so that its participants can rejoin)."""
        if len(self.rooms) >= self.config.max_rooms:
            raise RoomLimitError(f"the server already has {len(self.rooms)} rooms (max_rooms); close one first")
        room = Room(room_id or secrets.token_urlsafe(8), token or secrets.token_urlsafe(24))
        self.rooms[room.id] = room
        return room

    async def close_room(self, room_id: str, reason: str) -> None:
        """Tell everyone in the room it closed, disconnect them and forget the room."""
        room = self.rooms.pop(room_id, None)
        if room is None:
            return
        for participant in list(room.participants.values()):
            await _send(participant, m.ClosedNotice(reason=reason))
            await participant.ws.close(code=WSCloseCode.GOING_AWAY, message=b"room closed")
        log.info("room %s closed: %s", room_id, reason)

    async def _expire_loop(self) -> None:
        """Close the rooms empty for idle_timeout_s since their last participant left (logged by close_room)."""
        timeout = self.config.idle_timeout_s
        period = min(30.0, max(0.05, timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for room in list(self.rooms.values()):
                if room.idle_since is not None and not room.participants and now - room.idle_since >= timeout:
                    await self.close_room(room.id, f"expired: empty for {timeout:g} s after its last participant left")

    def _room_or_error(self, request: web.Request) -> Room:
        room_id = request.match_info["room"]
        room = self.rooms.get(room_id) if ROOM_ID_RE.match(room_id) else None
        if room is None:
            raise web.HTTPNotFound(text="no such room (it may have expired); ask for a new room URL\n")
        if not room.token_ok(request.query.get("token", "")):
            raise web.HTTPForbidden(text="wrong room token; open the full room URL you were given\n")
        return room

    # --- HTTP ----------------------------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="reactdiff-room: open the room URL (/r/ROOM?token=...) you were given\n")

    async def _page(self, request: web.Request) -> web.FileResponse:
        self._room_or_error(request)
        response = web.FileResponse(STATIC_DIR / "index.html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # the URL carries the room token
        return response

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser (the engine, a script): the token is the check
            return True
        own = f"{'https' if request.secure else 'http'}://{request.host}"
        return origin == own or origin in self.config.allowed_origins

    # --- admin API -----------------------------------------------------------------------------------------------

    def _check_admin(self, request: web.Request) -> None:
        """401 unless the request carries `Authorization: Bearer <admin_token>` (constant-time compare); 404 when
        the server has no admin token."""
        expected = self.config.admin_token
        if expected is None:
            raise web.HTTPNotFound(text="this server has no admin API (no admin token)\n")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise web.HTTPUnauthorized(
                text="send the admin token printed at start: Authorization: Bearer TOKEN\n",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def _api_create(self, request: web.Request) -> web.Response:
        """POST /api/rooms: a new room; 201 {"id", "url"}, 503 at max_rooms."""
        self._check_admin(request)
        try:
            room = self.create_room()
        except RoomLimitError as exc:
            raise web.HTTPServiceUnavailable(text=f"{exc}: DELETE /api/rooms/ROOM\n") from None
        log.info("room %s made through the admin API", room.id)
        return web.json_response({"id": room.id, "url": room.url(self.base_url)}, status=201)

    async def _api_close(self, request: web.Request) -> web.Response:
        """DELETE /api/rooms/ROOM: close it (its participants are told); 204, or 404 for no such room."""
        self._check_admin(request)
        room_id = request.match_info["room"]
        if room_id not in self.rooms:
            raise web.HTTPNotFound(text="no such room\n")
        await self.close_room(room_id, "closed by the server's admin")
        return web.Response(status=204)

    # --- signaling -----------------------------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        room = self._room_or_error(request)
        if not self._origin_ok(request):
            raise web.HTTPForbidden(text="WebSocket from a foreign origin; open the room page on this server\n")
        address = request.remote or "?"
        bucket = self._connects.setdefault(address, TokenBucket(self.config.connects_per_min / 60, 10))
        if not bucket.take():
            raise web.HTTPTooManyRequests(text="too many connections; wait a few seconds\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20.0)
        try:
            await ws.prepare(request)
        except ConnectionResetError:  # the connection went during the handshake: nothing to serve, nothing to log
            return web.Response()  # (not the half-made socket, which aiohttp would fail to finish); never sent
        self._sockets.add(ws)
        try:
            participant = await self._join(room, ws)
            if participant is not None:
                await self._serve(room, participant)
        finally:
            self._sockets.discard(ws)
            await ws.close()
        return ws

    async def _refuse(self, ws: web.WebSocketResponse, message: str) -> None:
        """Tell a participant why it is disconnected, then close its socket (it may be gone already)."""
        reason = message.encode()[:120].decode(errors="ignore").encode()  # a close reason is at most 123 bytes
        try:
            await ws.send_str(encode_message(m.ErrorNotice(message=m.clip(message))))
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason)
        except ConnectionError:
            log.debug("could not tell a participant why it was refused: connection lost")

    async def _join(self, room: Room, ws: web.WebSocketResponse) -> Participant | None:
        try:
            msg = await ws.receive(timeout=JOIN_TIMEOUT_S)
        except TimeoutError:
            await self._refuse(ws, f"send a 'join' message within {JOIN_TIMEOUT_S:.0f} s of connecting")
            return None
        if msg.type != WSMsgType.TEXT:
            return None
        try:
            join = parse_client_message(msg.data)
        except MessageError as err:
            await self._refuse(ws, str(err))
            return None
        if not isinstance(join, m.Join):
            await self._refuse(ws, "the first message must be 'join'")
            return None
        if room.id not in self.rooms:
            await self._refuse(ws, "the room was closed")
            return None
        if len(room.participants) >= self.config.max_participants:
            await self._refuse(ws, f"the room is full ({self.config.max_participants} participants)")
            return None
        participant = Participant(secrets.token_hex(4), join.name, join.role, ws)
        peers = [p.describe() for p in room.participants.values()]
        await ws.send_str(encode_message(m.Welcome(id=participant.id, peers=peers)))
        for other in room.participants.values():
            await _send(other, m.PeerJoined(peer=participant.describe()))
        room.participants[participant.id] = participant
        room.idle_since = None
        log.info("room %s: %s (%s) joined as %s", room.id, participant.name, participant.role, participant.id)
        return participant

    async def _serve(self, room: Room, me: Participant) -> None:
        bucket = TokenBucket(self.config.rate_per_s, self.config.rate_burst)
        try:
            async for msg in me.ws:
                if msg.type != WSMsgType.TEXT:
                    await self._refuse(me.ws, "only text (JSON) messages are accepted")
                    return
                if not bucket.take():
                    await self._refuse(me.ws, "rate limit exceeded; slow down")
                    return
                try:
                    message = parse_client_message(msg.data)
                except MessageError as err:
                    await self._refuse(me.ws, str(err))
                    return
                if not await self._relay(room, me, message):
                    return
        finally:
            if room.participants.pop(me.id, None) is not None:
                if not room.participants:
                    room.idle_since = time.monotonic()
                for other in room.participants.values():
                    await _send(other, m.PeerLeft(id=me.id))
                log.info("room %s: %s left", room.id, me.id)

    async def _relay(self, room: Room, me: Participant, message: m.ClientMessage) -> bool:
        """Act on one message; False ends the connection."""
        match message:
            case m.Offer(to=to, sdp=sdp) | m.Answer(to=to, sdp=sdp):
                target = room.participants.get(to)
                if target is None:
                    await _send(me, m.ErrorNotice(message=f"no participant {to!r} in this room (they may have left)"))
                elif isinstance(message, m.Offer):
                    await _send(target, m.RelayedOffer(sender=me.id, sdp=sdp))
                else:
                    await _send(target, m.RelayedAnswer(sender=me.id, sdp=sdp))
            case m.PublishStats(stats=stats):
                for other in room.participants.values():
                    if other is not me:
                        await _send(other, m.RelayedStats(sender=me.id, stats=stats))
            case m.Ping():
                await _send(me, m.Pong())
            case m.Join():
                await _send(me, m.ErrorNotice(message="already joined; 'join' is sent once"))
            case m.Leave():
                return False
        return True
