"""reactdiff-room on 127.0.0.1: the page and WebSocket checks (token, origin, schema, size, rate), signaling relay
between two participants, idle expiry, room closing, TLS with a self-signed certificate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.room_server.__main__ import main as room_main
from engine.room_server.server import RoomServer, ServerConfig
from engine.room_server.tls import fingerprint, self_signed_context
from engine.rooms.messages import parse_server_message

REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def running(**options: Any) -> AsyncIterator[RoomServer]:
    server = RoomServer(ServerConfig(host="127.0.0.1", port=0, **options))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def join(session: aiohttp.ClientSession, url: str, name: str) -> tuple[aiohttp.ClientWebSocketResponse, dict]:
    ws = await session.ws_connect(url)
    await ws.send_json({"type": "join", "name": name, "role": "browser"})
    return ws, await next_message(ws)


async def next_message(ws: aiohttp.ClientWebSocketResponse) -> dict:
    """The next message as the JSON the server sent, once it has passed the participants' schema."""
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    parse_server_message(msg.data)
    return json.loads(msg.data)


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def ws_url(server: RoomServer, room: Any, token: str | None = None) -> str:
    return f"ws://127.0.0.1:{server.port}/ws/{room.id}?token={token or room.token}"


def test_a_connection_lost_during_the_websocket_handshake_is_dropped_quietly(monkeypatch, caplog):
    # `reactdiff-engine --room local` stopped while its own client connects: the connection closes between the
    # upgrade request and the server's answer; no traceback in the log, and the next participant is served
    from aiohttp import web

    handshake = web.WebSocketResponse.prepare

    async def cut_during_handshake(self: web.WebSocketResponse, request: web.BaseRequest) -> Any:
        assert request.transport is not None
        request.transport.close()  # closing, not yet lost: the 101 answer cannot be written
        return await handshake(self, request)

    async def test():
        async with running() as server, aiohttp.ClientSession() as http:
            room = server.create_room()
            monkeypatch.setattr(web.WebSocketResponse, "prepare", cut_during_handshake)
            with pytest.raises(aiohttp.ClientError):
                await http.ws_connect(ws_url(server, room))
            monkeypatch.setattr(web.WebSocketResponse, "prepare", handshake)
            ws, welcome = await join(http, ws_url(server, room), "next")
            assert welcome["type"] == "welcome"
            await ws.close()

    with caplog.at_level(logging.DEBUG, logger="aiohttp"):
        run(test)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_page_needs_the_right_room_and_token():
    async def test():
        async with running() as server, aiohttp.ClientSession() as http:
            room = server.create_room()
            async with http.get(room.url(server.base_url)) as page:
                assert page.status == 200
                html = await page.text()
                assert "room.js" in html
                assert page.headers["Cache-Control"] == "no-store"
            scripts = re.findall(r'<script src="([^"]+)"', html)
            assert "/static/vendor/msgpack.min.js" in scripts  # the vendored npm build, not a hand-written decoder
            for src in scripts:
                async with http.get(f"{server.base_url}{src}") as script:
                    assert script.status == 200 and len(await script.read()) > 1000, src
            async with http.get(f"{server.base_url}/r/{room.id}?token={'x' * 32}") as page:
                assert page.status == 403
            async with http.get(f"{server.base_url}/r/nosuchroom?token={room.token}") as page:
                assert page.status == 404
            async with http.get(f"{server.base_url}/static/room.js") as script:
                assert "RTCPeerConnection" in await script.text()

    run(test)


def test_signaling_is_relayed_between_participants_and_leaves_are_announced():
    async def test():
        async with running() as server, aiohttp.ClientSession() as http:
            room = server.create_room()
            alice, welcome_a = await join(http, ws_url(server, room), "alice")
            assert welcome_a["type"] == "welcome" and welcome_a["peers"] == []
            bob, welcome_b = await join(http, ws_url(server, room), "bob")
            assert [p["name"] for p in welcome_b["peers"]] == ["alice"]
            joined = await next_message(alice)
            assert joined == {"type": "peer-joined", "peer": {"id": welcome_b["id"], "name": "bob", "role": "browser"}}
            await bob.send_json({"type": "offer", "to": welcome_a["id"], "sdp": "v=0 offer"})
            assert await next_message(alice) == {"type": "offer", "from": welcome_b["id"], "sdp": "v=0 offer"}
            await alice.send_json({"type": "stats", "stats": {"fps": 30.0, "latency_ms": 120, "backend": "ort"}})
            relayed = await next_message(bob)
            assert relayed["stats"]["fps"] == 30.0 and relayed["from"] == welcome_a["id"]
            await bob.send_json({"type": "leave"})
            assert await next_message(alice) == {"type": "peer-left", "id": welcome_b["id"]}
            await alice.close()
            await bob.close()

    run(test)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "offer", "to": "x"}, "missing required field `sdp`"),
        ({"type": "hello"}, "unknown message type 'hello'"),
        ({"type": "offer", "to": "x", "sdp": "v=0", "extra": 1}, "unknown field `extra`"),
        ({"type": "stats", "stats": {"fps": [1, 2]}}, "at `$.stats"),
    ],
)
def test_a_message_breaking_the_schema_closes_the_socket_with_the_reason(message, expected):
    async def test():
        async with running() as server, aiohttp.ClientSession() as http:
            room = server.create_room()
            ws, _ = await join(http, ws_url(server, room), "mallory")
            await ws.send_json(message)
            error = await next_message(ws)
            assert error["type"] == "error" and expected in error["message"]
            assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await until(lambda: not room.participants)

    run(test)


def test_oversized_messages_foreign_origins_and_wrong_tokens_are_refused():
    async def test():
        async with running() as server, aiohttp.ClientSession() as http:
            room = server.create_room()
            ws, _ = await join(http, ws_url(server, room), "big")
            await ws.send_str(json.dumps({"type": "offer", "to": "x", "sdp": "a" * 100_000}))
            closing = await ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(ws_url(server, room), headers={"Origin": "https://evil.example"})
            assert refused.value.status == 403
            page_origin = f"http://127.0.0.1:{server.port}"
            ok = await http.ws_connect(ws_url(server, room), headers={"Origin": page_origin})
            await ok.close()
            with pytest.raises(aiohttp.WSServerHandshakeError) as wrong:
                await http.ws_connect(ws_url(server, room, token="w" * 32))
            assert wrong.value.status == 403

    run(test)


def test_flooding_a_room_hits_the_rate_limit():
    async def test():
        async with running(rate_per_s=5.0, rate_burst=10) as server, aiohttp.ClientSession() as http:
            room = server.create_room()
            ws, _ = await join(http, ws_url(server, room), "flood")
            for _ in range(30):
                await ws.send_json({"type": "ping"})
            kinds = []
            while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
                kinds.append(json.loads(msg.data))
            assert kinds[-1] == {"type": "error", "message": "rate limit exceeded; slow down"}
            assert 9 <= sum(k["type"] == "pong" for k in kinds) <= 12

    run(test)


def test_full_rooms_refuse_newcomers():
    async def test():
        async with running(max_participants=1) as server, aiohttp.ClientSession() as http:
            room = server.create_room()
            first, _ = await join(http, ws_url(server, room), "first")
            _, refused = await join(http, ws_url(server, room), "second")
            assert refused["type"] == "error" and "full" in refused["message"]
            await first.close()

    run(test)


def test_a_room_expires_once_empty_after_its_last_participant_left_and_closing_a_room_tells_its_participants(
    caplog,
):
    """A room nobody joined yet stays (it expired idle_timeout_s after start: the printed URL then gave 404)."""
    caplog.set_level(logging.INFO, logger="engine.room_server.server")

    async def test():
        async with running(idle_timeout_s=0.2) as server, aiohttp.ClientSession() as http:
            unused, left, busy = server.create_room(), server.create_room(), server.create_room()
            ws, _ = await join(http, ws_url(server, busy), "stays")
            gone, _ = await join(http, ws_url(server, left), "leaves")
            await asyncio.sleep(0.4)
            assert set(server.rooms) == {unused.id, left.id, busy.id}  # occupied rooms do not expire
            await gone.close()
            await until(lambda: left.id not in server.rooms)
            assert unused.id in server.rooms and busy.id in server.rooms
            assert f"room {left.id} closed: expired: empty for 0.2 s after its last participant left" in caplog.text
            async with http.get(unused.url(server.base_url)) as page:
                assert page.status == 200
            await server.close_room(busy.id, "closed by the host")
            assert await next_message(ws) == {"type": "room-closed", "reason": "closed by the host"}
            async with http.get(busy.url(server.base_url)) as page:
                assert page.status == 404

    run(test)


def test_the_admin_api_makes_and_closes_rooms_for_the_admin_token_only():
    async def test():
        admin = {"Authorization": f"Bearer {'a' * 32}"}
        async with running(admin_token="a" * 32, max_rooms=2) as server, aiohttp.ClientSession() as http:
            api = f"{server.base_url}/api/rooms"
            for headers in ({}, {"Authorization": f"Bearer {'b' * 32}"}, {"Authorization": f"Basic {'a' * 32}"}):
                async with http.post(api, headers=headers) as refused:
                    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
            assert not server.rooms
            async with http.post(api, headers=admin) as made:
                assert made.status == 201
                room = await made.json()
            assert room["url"] == server.rooms[room["id"]].url(server.base_url)
            async with http.get(room["url"]) as page:
                assert page.status == 200
            ws, _ = await join(http, room["url"].replace("http", "ws").replace("/r/", "/ws/"), "guest")
            server.create_room()
            async with http.post(api, headers=admin) as full:
                assert full.status == 503 and "2 rooms" in await full.text()
            async with http.delete(f"{api}/{room['id']}", headers={}) as refused:
                assert refused.status == 401 and room["id"] in server.rooms
            async with http.delete(f"{api}/{room['id']}", headers=admin) as closed:
                assert closed.status == 204
            assert await next_message(ws) == {"type": "room-closed", "reason": "closed by the server's admin"}
            async with http.get(room["url"]) as page:
                assert page.status == 404
            async with http.delete(f"{api}/{room['id']}", headers=admin) as again:
                assert again.status == 404
        async with running() as server, aiohttp.ClientSession() as http:
            off = await http.post(f"{server.base_url}/api/rooms", headers=admin)
            assert off.status == 404  # no admin token: no API
            off.release()

    run(test)


def test_self_signed_tls_serves_https_for_the_given_hosts():
    context, cert_pem = self_signed_context(["localhost", "127.0.0.1"])
    assert len(fingerprint(cert_pem).split(":")) == 32

    async def test():
        async with running(ssl_context=context) as server, aiohttp.ClientSession() as http:
            room = server.create_room()
            assert server.base_url.startswith("https://")
            async with http.get(room.url(server.base_url), ssl=False) as page:
                assert page.status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(room.url(server.base_url))
            trusting = ssl.create_default_context(cadata=cert_pem.decode())
            async with http.get(room.url(server.base_url).replace("127.0.0.1", "localhost"), ssl=trusting) as page:
                assert page.status == 200

    run(test)


def test_cli_refuses_half_a_tls_configuration(capsys):
    assert room_main(["--tls-cert", "cert.pem", "--port", "0"]) == 2
    assert "give --tls-cert and --tls-key together" in capsys.readouterr().err
    assert room_main(["--tls-cert", "missing.pem", "--tls-key", "missing.key"]) == 2
    assert "--tls-cert missing.pem: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--rooms", "0"], "--rooms 0: create 1 to 100 rooms at start"),  # a server of no room waited for Ctrl-C
        (["--rooms", "101"], "--rooms 101: create 1 to 100 rooms"),  # a traceback (RuntimeError from create_room)
        (["--max-participants", "0"], "--max-participants 0: allow at least 1"),
        (["--idle-timeout", "0"], "--idle-timeout 0.0: give a positive number of seconds"),
    ],
)
def test_cli_refuses_counts_that_cannot_work_in_one_line(args, phrase, capsys):
    assert room_main([*args, "--port", "0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("reactdiff-room: error: ") and phrase in lines[0], lines


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_prints_how_to_make_rooms_and_a_stop_signal_exits_as_the_engine_does(signum, status):
    """Ctrl-C and SIGTERM exited 0; the command line printed the start-up rooms and no way to make more."""
    server = subprocess.Popen([sys.executable, "-m", "engine.room_server", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    watchdog = threading.Timer(30.0, server.kill)  # a server that hangs fails the test instead of holding it
    watchdog.start()
    try:
        assert server.stdout is not None and server.stderr is not None
        first = server.stdout.readline().removeprefix("room: ").strip()
        more = re.fullmatch(r"more rooms: curl -X POST -H 'Authorization: Bearer (\S+)' (\S+/api/rooms)\n",
                            server.stdout.readline())  # fmt: skip
        assert more is not None
        made = urllib.request.urlopen(urllib.request.Request(more[2], method="POST", headers={
            "Authorization": f"Bearer {more[1]}"}), timeout=5)  # fmt: skip
        assert made.status == 201
        for url in (first, json.load(made)["url"]):
            with urllib.request.urlopen(url, timeout=5) as page:
                assert page.status == 200
        server.send_signal(signum)
        assert server.wait(timeout=10) == status
        err = server.stderr.read()
        assert "reactdiff-room: stopping" in err and "Traceback" not in err, err
    finally:
        watchdog.cancel()
        server.kill()
        server.communicate()


def test_local_room_serves_its_page_on_loopback_and_closes():
    import urllib.request

    from engine.room_server.local import LocalRoom

    local = LocalRoom(port=0)
    url = local.start()
    assert url.startswith("http://127.0.0.1:") and "/r/" in url and "token=" in url
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200 and b"<html" in response.read().lower()
    local.close()
    local.close()  # safe twice
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


async def fuzz_case(http: aiohttp.ClientSession, url: str, text: str, room: Any, witness: str) -> None:
    """Join as "fuzzer", send `text`, then a ping: the pong (or the server's error and close) must come."""
    ws, _ = await join(http, url, "fuzzer")
    await ws.send_str(text)
    await ws.send_json({"type": "ping"})
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break  # refused: closed with the reason sent just before
        reply = json.loads(msg.data)
        parse_server_message(msg.data)  # whatever the server says follows its own schema
        if reply["type"] == "pong":
            break
        assert reply["type"] == "error"
    await ws.close()
    await until(lambda: set(room.participants) == {witness})


def test_any_text_from_a_participant_is_relayed_answered_or_refused_and_costs_only_its_socket(caplog):
    """1,000 generated frames from one participant (valid messages, mutated ones, other JSON, non-JSON): the server
    never fails (no error logged: aiohttp logs a handler's exception) or hangs, a witness in the same room stays
    connected and receives only schema-valid messages, and no descriptor or thread is left behind."""
    from hypothesis import given

    from tests.engine.fuzz import CASES, LoopThread, signaling_texts
    from tests.resources import no_resource_growth

    async def witness_saw(witness: aiohttp.ClientWebSocketResponse) -> list[dict]:
        seen = []
        with contextlib.suppress(TimeoutError):
            while (msg := await witness.receive(timeout=1.0)).type == aiohttp.WSMsgType.TEXT:
                parse_server_message(msg.data)
                seen.append(json.loads(msg.data))
        return seen

    with no_resource_growth(), LoopThread() as loop:
        server = RoomServer(ServerConfig(host="127.0.0.1", port=0, connects_per_min=1e6))
        loop.run(server.start())
        http = loop.run(opened_session())
        try:
            room = server.create_room()
            url = ws_url(server, room)
            witness, welcome = loop.run(join(http, url, "witness"))
            sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
            templates = [
                {"type": "offer", "to": welcome["id"], "sdp": sdp},
                {"type": "answer", "to": welcome["id"], "sdp": sdp},
                {"type": "stats", "stats": {"fps": 30.0, "backend": "onnx", "p95": None}},
                {"type": "join", "name": "again", "role": "browser"},
                {"type": "ping"},
                {"type": "leave"},
            ]

            @CASES
            @given(text=signaling_texts(templates))
            def case(text: str) -> None:
                loop.run(fuzz_case(http, url, text, room, welcome["id"]))

            case()
            seen = loop.run(witness_saw(witness))
            assert not witness.closed and {m["type"] for m in seen} >= {"peer-joined", "peer-left", "offer", "stats"}
            loop.run(witness.close())
            assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        finally:
            loop.run(http.close())
            loop.run(server.stop())


async def opened_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()
