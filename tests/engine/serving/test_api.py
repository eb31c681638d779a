"""reactdiff-serve's API on 127.0.0.1: a session joins a real reactdiff-room where an aiortc participant speaks, its
windows run through the shared scheduler, its stats and the metrics show it, and it leaves when stopped; the
token, malformed requests, unknown sessions, an unreachable room and admission control get one-line errors; a
session whose call ends stays listed, ended, with its error."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import aioice.ice
import pytest
from aiohttp import web

from engine.model_dir import load_model_dir
from engine.serving.admission import Capacity, CapacityConfig, Costs
from engine.serving.api import ServeAPI
from engine.serving.metrics import ServeMetrics
from engine.serving.scheduler import BatchScheduler, SchedulerConfig
from engine.serving.service import BackendSettings, InProcessService
from engine.serving.sessions import SessionDefaults, SessionManager
from renderer.sinks import Sink
from tests.engine.test_rooms_client import Participant, room_server, until, ws_of
from tests.engine.test_stream import FakeSource, speech

TOKEN = "serve-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COSTS = Costs(batch_s={1: 0.005, 16: 0.05}, threads=1, video_frame_s=0.01, avatar_frame_s=0.002)


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch):
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class NullSink(Sink):
    """Takes frames and keeps none."""

    def _write(self, frame, timestamp_s):
        self.written = getattr(self, "written", 0) + 1

    def _close(self):
        self.written = getattr(self, "written", 0)


class FakeCall:
    """A call without a network: a speaker file paced in real time; it ends when the speech does."""

    def __init__(self, seconds: float) -> None:
        self.source = FakeSource(speech(seconds), realtime=True)
        self.error = None
        self.closed = False

    def make_sink(self, width: int, height: int) -> Sink:
        return NullSink(width=width, height=height)

    def publish(self, emitted) -> None:
        pass

    def set_stats_source(self, fn) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self.source.close()


@asynccontextmanager
async def serving(model_dir, open_call=None, **limits: Any) -> AsyncIterator[tuple[str, ServeAPI]]:
    model = load_model_dir(model_dir)
    service = InProcessService(model, BackendSettings("onnxruntime"))
    scheduler = BatchScheduler(service, SchedulerConfig(gather_s=0.02))
    capacity = Capacity(COSTS, CapacityConfig(**{"cores": 2.0, **limits}), hop=model.hop, scheduler=scheduler.config)
    options = {"open_call": open_call} if open_call else {}
    manager = SessionManager(model, scheduler, capacity, SessionDefaults(size=(64, 48)), measure_load=False, **options)
    metrics = ServeMetrics(sessions=manager.figures, queue_depth=lambda: scheduler.queue_depth,
                           limits=capacity.limits())  # fmt: skip
    scheduler.observers.append(metrics.observe_batch)
    api = ServeAPI(manager, metrics, TOKEN)
    runner = web.AppRunner(api.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", api
    finally:
        await runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, manager.close)
        api.close()
        scheduler.close()
        service.close()


def metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.slow
def test_a_session_joins_a_room_reacts_to_its_speaker_shows_its_stats_and_leaves(tiny_model_dir):
    before = {t.name for t in threading.enumerate()}

    async def test():
        async with (
            room_server() as (server, room),
            Participant(ws_of(server, room), "speaker", 0.5) as speaker,
            serving(tiny_model_dir) as (url, _),
            aiohttp.ClientSession(headers=AUTH) as http,
        ):
            body = {"room": room.url(server.base_url), "video": False, "seed": 7}
            async with http.post(f"{url}/v1/sessions", json=body) as r:
                assert r.status == 201, await r.text()
                session = await r.json()
            assert session["state"] == "running" and session["seed"] == 7

            async def windows_run() -> int:
                async with http.get(f"{url}/v1/sessions") as r:
                    listed = await r.json()
                return listed["sessions"][0]["stats"]["windows_run"]

            for _ in range(200):  # 10 s at most
                if await windows_run() >= 3:
                    break
                await asyncio.sleep(0.05)
            await until(lambda: len(speaker.reactions) > 0 and len(speaker.video_frames) > 0)
            async with http.get(f"{url}/metrics") as r:
                text = await r.text()
            assert metric(text, "reactdiff_windows_total") >= 3
            assert metric(text, 'reactdiff_sessions{state="running"}') == 1
            async with http.delete(f"{url}/v1/sessions/{session['id']}") as r:
                assert r.status == 200
                final = await r.json()
            assert final["stats"]["windows_run"] >= 3 and final["error"] is None
            async with http.get(f"{url}/v1/sessions") as r:
                assert (await r.json())["sessions"] == []

    asyncio.run(test())
    leaked = {t.name for t in threading.enumerate()} - before
    assert not leaked, leaked


def test_requests_that_break_the_rules_get_one_line_errors(tiny_model_dir):
    async def test():
        async with serving(tiny_model_dir) as (url, _), aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as r:
                assert r.status == 200
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
                async with http.get(f"{url}/v1/sessions", headers=headers) as r:
                    assert r.status == 401 and "Authorization: Bearer TOKEN" in (await r.json())["error"]
            cases = [
                (b"{not json", 400, "must be a JSON object"),
                (b'{"room": "http://h/r/abcd?token=abcdefghijklmnopqrstuvwx", "colour": 1}', 400, "unknown field"),
                (b'{"room": "http://h/r/abcd?token=abcdefghijklmnopqrstuvwx", "seed": -1}', 400, r"\$.seed"),
                (b'{"room": "http://h/r/abcd"}', 400, "missing token="),
                (b'{"room": "http://h/r/abcd?token=abcdefghijklmnopqrstuvwx", "persona": "nodder"}', 400,
                 "persona 'nodder': this model knows none"),
                (b'{"room": "http://h/r/abcd?token=abcdefghijklmnopqrstuvwx", "expressiveness": 9}', 400,
                 "expressiveness 9.0: use 0.25 to 2.5"),
                (b'{"room": "http://h/r/abcd?token=abcdefghijklmnopqrstuvwx", "temperature": "hot"}', 400,
                 r"\$.temperature"),
                (b'{"room": "http://127.0.0.1:1/r/abcd?token=abcdefghijklmnopqrstuvwx", "video": false}', 502,
                 "127.0.0.1:1"),
                (b'{"room": "http://127.0.0.1:1/r/abcd?token=abcdefghijklmnopqrstuvwx", "avatar": "nobody.png"}',
                 400, "avatar 'nobody.png'"),
            ]  # fmt: skip
            for body, status, problem in cases:
                async with http.post(f"{url}/v1/sessions", data=body, headers=AUTH) as r:
                    message = (await r.json())["error"]
                    assert r.status == status, message
                    assert "\n" not in message
                    assert re.search(problem, message), message
            async with http.delete(f"{url}/v1/sessions/nope", headers=AUTH) as r:
                assert r.status == 404 and "GET /v1/sessions" in (await r.json())["error"]

    asyncio.run(test())


def test_admission_refuses_a_session_over_the_limit_and_an_ended_call_stays_listed(tiny_model_dir):
    calls: list[FakeCall] = []

    def open_call(spec, size):
        calls.append(FakeCall(seconds=1.0 if spec.seed == 1 else 30.0))
        return calls[-1]

    async def test():
        async with (
            serving(tiny_model_dir, open_call, max_sessions=1) as (url, api),
            aiohttp.ClientSession(headers=AUTH) as http,
        ):
            room = "http://127.0.0.1:1/r/abcd?token=abcdefghijklmnopqrstuvwx"
            async with http.post(f"{url}/v1/sessions", json={"room": room, "seed": 1, "video": False}) as r:
                assert r.status == 201
                first = await r.json()
            async with http.post(f"{url}/v1/sessions", json={"room": room, "video": False}) as r:
                refused = await r.json()
                assert r.status == 503 and refused["limits"] == {"audio": 1, "video": 1}
                assert "server full: 1 session(s) running" in refused["error"]
            async with http.get(f"{url}/metrics") as r:
                assert metric(await r.text(), "reactdiff_sessions_refused_total") == 1
            await until(lambda: api.manager.get(first["id"]).state == "ended")  # its 1 s of speech is over
            async with http.get(f"{url}/v1/sessions/{first['id']}") as r:
                ended = await r.json()
            assert ended["error"] == "the call ended" and ended["stats"]["windows_run"] > 0 and calls[0].closed
            async with http.post(f"{url}/v1/sessions", json={"room": room, "video": False}) as r:
                assert r.status == 201  # an ended session no longer counts

    asyncio.run(test())
