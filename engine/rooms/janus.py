"""The engine as a participant of a Janus VideoRoom, through Janus's WebSocket API (`janus-protocol`).

    reactdiff-engine --model runs/tiny/model --room 'janus+ws://127.0.0.1:8188/?room=1234'

The engine joins as a publisher (display name from `&display=`, PIN from `&pin=`) and publishes the avatar video;
it subscribes to every other publisher's feed (one subscriber handle and peer connection per feed, Janus 1.x
multistream `streams: [{feed}]`), and the speaker switch forwards the loudest one's audio and video to the engine.
aiortc has no trickle ICE, so every SDP is complete and followed by a `completed` trickle. Reactions are not
carried: the `reactions` data channel belongs to the built-in room only; Janus participants see just the video.

`JanusAPI` is the signaling layer alone (one Janus session on one WebSocket: requests matched to replies by
transaction, unsolicited plugin events queued, keepalives); `JanusRoomClient` is the room client on top of it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

from engine.rooms.base import Peer, RoomClient, RoomError, RoomGone
from engine.rooms.sdp import NegotiationError

log = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"
PROTOCOL = "janus-protocol"
KEEPALIVE_S = 25.0  # Janus drops a session after 60 s without a request (its default session_timeout)
MAX_MESSAGE_BYTES = 1 << 20
PUBLISHER_KEY = "avatar"  # the peers entry of our own publisher connection (feed ids are all digits)
SUBSCRIBE_RETRY_S = (0.5, 2.0, 5.0)  # waits before retrying a subscription that failed; then it is given up

# VideoRoom error codes (janus_videoroom.c) the user can act on.
NO_SUCH_ROOM, UNAUTHORIZED, ROOM_FULL = 426, 433, 432


class JanusError(RoomError):
    """Janus refused a request (`code` is Janus's or the VideoRoom's error code)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class JanusClosed(RoomGone):
    """The VideoRoom does not exist or was destroyed: reconnecting cannot help."""


@dataclass(frozen=True)
class PluginEvent:
    """An event Janus sent on its own (not as the reply to a request)."""

    handle: int
    kind: str
    """The Janus message type: "event" (plugin data), "hangup", "webrtcup", "media", "detached", ..."""
    data: dict[str, Any]
    """The plugin's data for "event"; the whole message otherwise."""


def plugin_error(data: dict[str, Any]) -> JanusError | None:
    """The VideoRoom's error inside plugin data (`{"videoroom": "event", "error_code": 426, ...}`), if any."""
    if "error_code" not in data and "error" not in data:
        return None
    return JanusError(str(data.get("error", "unknown error")), int(data.get("error_code", 0)))


class JanusAPI:
    """One Janus session over the WebSocket API.

    api = await JanusAPI.connect("ws://127.0.0.1:8188/", timeout_s=10)
    handle = await api.attach("janus.plugin.videoroom")
    data, jsep = await api.message(handle, {"request": "join", ...})    # the plugin's reply (and SDP)
    event = await api.events.get()                                       # PluginEvent, None once closed
    await api.close()
    """

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.session_id = 0
        self.events: asyncio.Queue[PluginEvent | None] = asyncio.Queue()
        self._http, self._ws = http, ws
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count()
        self._reader = asyncio.create_task(self._read(), name="room-janus-read")
        self._keepalive: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, ws_url: str, *, timeout_s: float = 10.0, verify_tls: bool = True) -> JanusAPI:
        """Open the WebSocket and create a Janus session; RoomError (one line) when that fails."""
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        try:
            ws = await http.ws_connect(
                ws_url, protocols=(PROTOCOL,), ssl=verify_tls, max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20.0
            )
        except aiohttp.WSServerHandshakeError as err:
            await http.close()
            raise RoomError(f"{ws_url} is not a Janus WebSocket API (HTTP {err.status}); check the host and port "
                            "(Janus's websockets transport listens on 8188 by default)") from err  # fmt: skip
        except aiohttp.ClientConnectorCertificateError as err:
            await http.close()
            raise RoomError(f"Janus at {ws_url}: its TLS certificate is not trusted (self-signed? add &insecure=1 "
                            "to the room URL if you trust this server)") from err  # fmt: skip
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            await http.close()
            raise RoomError(f"cannot reach Janus at {ws_url} ({err.__class__.__name__}: {err})") from err
        api = cls(http, ws, timeout_s)
        try:
            reply = await api.request({"janus": "create"})
            api.session_id = int(reply["data"]["id"])
        except BaseException:
            await api.close()
            raise
        api._keepalive = asyncio.create_task(api._keep_alive(), name="room-janus-keepalive")
        return api

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def request(self, body: dict[str, Any], *, ack: bool = False) -> dict[str, Any]:
        """Send a Janus request and return its reply: "success", or the plugin's "event" after an "ack" (or the
        "ack" itself with `ack=True`, for requests that get nothing more, like trickle)."""
        transaction = f"rd{next(self._ids)}-{secrets.token_hex(4)}{'-ack' if ack else ''}"
        message = {**body, "transaction": transaction}
        if self.session_id:
            message["session_id"] = self.session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        try:
            await self._ws.send_str(json.dumps(message))
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError as err:
            raise RoomError(f"Janus did not answer {body['janus']!r} within {self.timeout_s:.0f} s") from err
        except (ConnectionError, aiohttp.ClientError) as err:
            raise RoomError(f"lost the connection to Janus ({err.__class__.__name__}: {err})") from err
        finally:
            self._pending.pop(transaction, None)

    async def attach(self, plugin: str) -> int:
        """A new plugin handle; returns its id."""
        reply = await self.request({"janus": "attach", "plugin": plugin})
        return int(reply["data"]["id"])

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A plugin request on `handle`: (the plugin's data, its jsep or None); JanusError if the plugin refused."""
        request: dict[str, Any] = {"janus": "message", "handle_id": handle, "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self.request(request)
        data = reply.get("plugindata", {}).get("data", {})
        error = plugin_error(data)
        if error is not None:
            raise error
        return data, reply.get("jsep")

    async def trickle_completed(self, handle: int) -> None:
        """Tell Janus our SDP already held every candidate (aiortc gathers them all before it answers)."""
        await self.request({"janus": "trickle", "handle_id": handle, "candidate": {"completed": True}}, ack=True)

    async def detach(self, handle: int) -> None:
        await self.request({"janus": "detach", "handle_id": handle})

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._dispatch(msg.data)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the Janus WebSocket closed"))
            self.events.put_nowait(None)

    def _dispatch(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message["janus"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message from Janus: %.200s", text)
            return
        transaction = str(message.get("transaction", ""))
        future = self._pending.get(transaction)
        if future is not None and not future.done():
            if kind == "error":
                error = message.get("error", {})
                future.set_exception(JanusError(str(error.get("reason", "error")), int(error.get("code", 0))))
            elif kind in ("success", "event") or (kind == "ack" and transaction.endswith("-ack")):
                future.set_result(message)
            return  # any other "ack": the plugin's event follows with the same transaction
        if kind in ("ack", "keepalive", "success"):
            return
        data = message.get("plugindata", {}).get("data", {}) if kind == "event" else message
        self.events.put_nowait(PluginEvent(int(message.get("sender", 0)), kind, data))

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            try:
                await self.request({"janus": "keepalive"})
            except RoomError as err:
                log.debug("Janus keepalive failed: %s", err)
                return

    async def close(self, *, destroy: bool = True) -> None:
        """Destroy the session (if the socket is still up) and close the socket; safe twice."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
        if destroy and self.session_id and not self._ws.closed and not self.closed:
            try:
                await asyncio.wait_for(self.request({"janus": "destroy"}), 2.0)
            except (RoomError, TimeoutError):
                log.debug("could not destroy the Janus session")
        await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._http.close()


class JanusRoomClient(RoomClient):
    """A publisher (the avatar) and subscriber (everyone else) in one Janus VideoRoom."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api: JanusAPI | None = None
        self.feed_id: int | None = None
        self._publisher = 0  # handle ids
        self._subscribers: dict[int, int] = {}  # feed id -> subscriber handle
        self._published: set[int] = set()  # feeds Janus says are published now (a failed subscription retries them)
        self._private_id = 0

    @property
    def room(self) -> int:
        return int(self.url.room)

    def _room_body(self, **body: Any) -> dict[str, Any]:
        if self.url.pin:
            body["pin"] = self.url.pin
        return {"room": self.room, **body}

    # --- joining ---------------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Create a session, join as a publisher, publish the avatar, subscribe to the feeds already there."""
        self.api = api = await JanusAPI.connect(
            self.url.ws_url, timeout_s=self.join_timeout_s, verify_tls=self.url.verify_tls
        )
        try:
            self._publisher = await api.attach(VIDEOROOM)
        except JanusError as err:
            raise RoomError(f"Janus at {self.url.host}:{self.url.port} has no VideoRoom plugin ({err})") from err
        joined = await self._join_as_publisher(api)
        self.feed_id, self._private_id = int(joined["id"]), int(joined.get("private_id", 0))
        await self._publish(api)
        self._follow(joined)
        log.info("joined Janus room %s as feed %s with %d publisher(s)", self.room, self.feed_id,
                 len(joined.get("publishers", [])))  # fmt: skip

    async def _join_as_publisher(self, api: JanusAPI) -> dict[str, Any]:
        body = self._room_body(request="join", ptype="publisher", display=self.url.display)
        try:
            data, _ = await api.message(self._publisher, body)
        except JanusError as err:
            raise self._join_error(err) from err
        if data.get("videoroom") != "joined":
            raise RoomError(f"Janus room {self.room}: unexpected reply to join: {json.dumps(data)[:200]}")
        return data

    def _join_error(self, err: JanusError) -> RoomError:
        where = f"Janus room {self.room} on {self.url.host}:{self.url.port}"
        if err.code == NO_SUCH_ROOM:
            return JanusClosed(f"{where} does not exist; fix room= in the URL or create the room (a room-{self.room} "
                               "section in janus.plugin.videoroom.jcfg, or a VideoRoom 'create' request)")  # fmt: skip
        if err.code == UNAUTHORIZED:
            return RoomError(f"{where}: the PIN is wrong or missing (add &pin=... to the room URL)")
        if err.code == ROOM_FULL:
            return RoomError(f"{where} is full (its 'publishers' limit is reached)")
        return RoomError(f"{where}: Janus refused to let us join: {err} (code {err.code})")

    async def _publish(self, api: JanusAPI) -> None:
        peer = self.new_peer(PUBLISHER_KEY, self.avatar_for_peer(), receive=False)
        offer = await peer.offer()
        try:
            _, jsep = await api.message(self._publisher, {"request": "publish"}, {"type": "offer", "sdp": offer})
        except JanusError as err:
            raise RoomError(f"Janus room {self.room}: publishing the avatar was refused: {err}") from err
        if jsep is None or jsep.get("type") != "answer":
            raise RoomError(f"Janus room {self.room}: no SDP answer to our publish request")
        await peer.accept(jsep["sdp"])
        await api.trickle_completed(self._publisher)

    def _follow(self, data: dict[str, Any]) -> None:
        """Subscribe to the feeds a VideoRoom message lists as published; forget those it lists as gone."""
        for feed in data.get("publishers", []):
            feed_id = int(feed["id"])
            if feed_id != self.feed_id and feed_id not in self._published:
                self._published.add(feed_id)
                self.spawn(self._subscribe(feed_id), f"room-subscribe-{feed_id}")
        for key in ("unpublished", "leaving"):
            if isinstance(data.get(key), int):
                self._published.discard(data[key])
                if data[key] in self._subscribers:
                    self.spawn(self._unsubscribe(data[key]), f"room-unsubscribe-{data[key]}")

    async def _subscribe(self, feed: int) -> None:
        """Subscribe to one publisher's feed; a failure at any step cleans up its handle and connection and is
        retried after each of SUBSCRIBE_RETRY_S while the feed is still published, then given up (logged)."""
        for delay in (*SUBSCRIBE_RETRY_S, None):
            api = self.api
            if api is None or feed not in self._published or feed in self._subscribers:
                return
            try:
                await self._subscribe_once(api, feed)
                return
            except Exception as err:  # Janus's refusal, its SDP or a lost connection: cost this feed only
                self.counters.negotiation_failures += 1
                log.warning("cannot subscribe to feed %s: %s: %s", feed, err.__class__.__name__, err)
                await self._unsubscribe(feed)
            if delay is None:
                log.warning("gave up subscribing to feed %s after %d tries", feed, len(SUBSCRIBE_RETRY_S) + 1)
                return
            await asyncio.sleep(delay)

    async def _subscribe_once(self, api: JanusAPI, feed: int) -> None:
        """A subscriber handle and peer connection for one feed (its audio and video)."""
        self.counters.negotiations += 1
        handle = await api.attach(VIDEOROOM)
        self._subscribers[feed] = handle
        body = self._room_body(request="join", ptype="subscriber", streams=[{"feed": feed}])
        if self._private_id:
            body["private_id"] = self._private_id
        _, jsep = await api.message(handle, body)
        if jsep is None or jsep.get("type") != "offer":
            raise NegotiationError(f"Janus sent no offer for feed {feed}")
        peer = self.new_peer(str(feed), None, receive=False)
        answer = await peer.answer(jsep["sdp"])
        await api.message(handle, {"request": "start"}, {"type": "answer", "sdp": answer})
        await api.trickle_completed(handle)
        self.spawn(self._expect_connected(peer), f"room-watch-{feed}")
        log.info("subscribed to feed %s", feed)

    async def _unsubscribe(self, feed: int) -> None:
        await self.drop_peer(str(feed))
        handle = self._subscribers.pop(feed, None)
        if handle is not None and self.api is not None and not self.api.closed:
            try:
                await self.api.detach(handle)
            except RoomError as err:  # the session is going anyway; Janus frees the handle with it
                log.debug("could not detach feed %s's handle: %s", feed, err)

    async def join(self) -> None:
        try:
            await asyncio.wait_for(self._connect(), 3 * self.join_timeout_s)
        except TimeoutError as err:
            await self._close_api()
            raise RoomError(
                f"Janus room {self.room}: joining took longer than {3 * self.join_timeout_s:.0f} s"
            ) from err
        except BaseException:
            await self._close_api()
            raise

    # --- serving ---------------------------------------------------------------------------------------------

    async def _serve_connection(self) -> None:
        """Handle Janus events until the WebSocket closes; JanusClosed when the room is destroyed."""
        api = self.api
        while api is not None and not self._closing:
            event = await api.events.get()
            if event is None:
                return
            await self._handle(event)

    async def _handle(self, event: PluginEvent) -> None:
        data = event.data
        if event.kind == "event" and event.handle == self._publisher:
            if data.get("videoroom") == "destroyed":
                raise JanusClosed(f"Janus room {self.room} was destroyed (closed by its owner)")
            self._follow(data)
        elif event.kind == "hangup":
            log.warning("Janus hung up handle %s: %s", event.handle, data.get("reason"))
        elif event.kind == "timeout":
            log.warning("Janus timed our session out")
            await self._close_api()

    def _peer_failed(self, peer: Peer) -> None:
        """The avatar's own connection failing means rejoining (the session's socket is closed, so serve()
        reconnects); a subscription failing costs only that feed."""
        if peer.id != PUBLISHER_KEY:
            super()._peer_failed(peer)
        elif self.peers.get(PUBLISHER_KEY) is peer and not self._closing:
            self.counters.connections_failed += 1
            log.warning("the avatar's connection to Janus failed; rejoining the room")
            self.spawn(self._close_api(destroy=False), "room-janus-rejoin")

    def _lost_message(self, seconds: float) -> str:
        where = f"{self.url.host}:{self.url.port}"
        return f"lost Janus room {self.room}: no connection to Janus at {where} for {seconds:.0f} s"

    def send_stats(self, stats: dict[str, float | str | None]) -> None:
        """Janus VideoRoom has nowhere to show them; they stay in the engine's own report."""

    # --- leaving ---------------------------------------------------------------------------------------------

    async def _reset_connection(self) -> None:
        """Drop the peers and the (dead) session before a reconnect."""
        await self.drop_all_peers()
        self._subscribers.clear()
        self._published.clear()
        await self._close_api(destroy=False)

    async def _close_api(self, *, destroy: bool = True) -> None:
        api, self.api = self.api, None
        if api is not None:
            await api.close(destroy=destroy)

    async def _disconnect(self) -> None:
        api = self.api
        if api is not None and not api.closed and self._publisher:
            try:
                await asyncio.wait_for(api.message(self._publisher, {"request": "leave"}), 2.0)
            except (RoomError, TimeoutError):
                log.debug("could not say goodbye to Janus")
        await self._close_api()
