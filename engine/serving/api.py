"""The HTTP API of reactdiff-serve (aiohttp), every route but /healthz behind a bearer token.

    POST   /v1/sessions         {"room": URL, "avatar": "default", "video": true, "seed": 0, "persona": null,
                                 "expressiveness": null, "temperature": 1} -> 201
    GET    /v1/sessions         -> 200 {"sessions": [...], "capacity": {...}}: each with its live stats
    GET    /v1/sessions/ID      -> 200 the session, 404 if there is none
    DELETE /v1/sessions/ID      -> 200 the session's final stats (it has left its room)
    GET    /v1/capacity         -> 200 the admission limits and the load now
    GET    /metrics             -> the Prometheus text format (engine.serving.metrics)
    GET    /healthz             -> 200 "ok" (no token: for load balancers)

Errors are one JSON line {"error": "..."} that says what was wrong and how to fix it: 401 a missing or wrong
token, 400 malformed JSON or a field that breaks the schema (msgspec names it), a bad room URL, avatar or persona
(one the model does not have), an expressiveness or temperature out of its range, 503 a session that admission
control refuses (with "limits"), 502 a room that cannot be joined. Joining, stopping and the stats run on worker
threads: the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Annotated, Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from engine.rooms import RoomError, parse_room_url
from engine.serving.admission import AdmissionError
from engine.serving.metrics import ServeMetrics
from engine.serving.sessions import ENDED, SessionManager, SessionSpec, window_inputs
from renderer.face_model import FaceModelError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
JOIN_WORKERS = 4  # sessions joining (or stopping) at once; more wait their turn
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CreateSession(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The body of POST /v1/sessions."""

    room: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    avatar: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] = "default"
    video: bool = True
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    persona: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    expressiveness: float | None = None
    temperature: float = 1.0


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def parse_create(body: bytes) -> SessionSpec:
    """The request body as a SessionSpec; ValueError (one line, naming the field) when it is not one."""
    try:
        request = msgspec.json.decode(body, type=CreateSession)
    except msgspec.DecodeError as exc:
        raise ValueError(f"the body must be a JSON object like {{\"room\": URL, \"avatar\": \"default\", "
                         f"\"video\": true, \"seed\": 0}}: {exc}") from None  # fmt: skip
    parse_room_url(request.room)  # RoomURLError (a ValueError) says what is wrong with it
    return SessionSpec(request.room, request.avatar, request.video, request.seed, request.persona,
                       request.expressiveness, request.temperature)  # fmt: skip


class ServeAPI:
    """The aiohttp application over a SessionManager."""

    def __init__(self, manager: SessionManager, metrics: ServeMetrics, token: str) -> None:
        self.manager, self.metrics, self.token = manager, metrics, token
        self._executor = ThreadPoolExecutor(JOIN_WORKERS, thread_name_prefix="reactdiff-serve-join")
        self.app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._auth])
        self.app.router.add_get("/healthz", self._health)
        self.app.router.add_post("/v1/sessions", self._create)
        self.app.router.add_get("/v1/sessions", self._list)
        self.app.router.add_get("/v1/sessions/{id}", self._get)
        self.app.router.add_delete("/v1/sessions/{id}", self._delete)
        self.app.router.add_get("/v1/capacity", self._capacity)
        self.app.router.add_get("/metrics", self._metrics)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return error(401, "missing or wrong token: send the header 'Authorization: Bearer TOKEN' with the "
                              "token reactdiff-serve printed at start (or was given with --token)")  # fmt: skip
        return await handler(request)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _create(self, request: web.Request) -> web.Response:
        try:
            spec = parse_create(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return error(400, f"the body is over {MAX_BODY_BYTES} bytes: send only the session's fields")
            window_inputs(self.manager.model, spec)
        except ValueError as exc:
            return error(400, str(exc))
        try:
            session = await self._run(self.manager.create, spec)
        except AdmissionError as exc:
            self.metrics.refused.inc()
            return error(503, str(exc), limits=exc.limits)
        except RoomError as exc:
            return error(502, str(exc))
        except FaceModelError as exc:
            return error(503, f'this server cannot track faces ({exc}); ask for "video": false')
        except (ValueError, OSError) as exc:  # the avatar: AvatarError is a ValueError, a missing photo an OSError
            return error(400, f"avatar {spec.avatar!r}: {exc}")
        return web.json_response(session.describe(), status=201)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(await self._run(self._listing))  # the stats' percentiles: off the loop

    def _listing(self) -> dict[str, Any]:
        return {"sessions": [s.describe() for s in self.manager.sessions()], "capacity": self._capacity_now()}

    async def _get(self, request: web.Request) -> web.Response:
        try:
            session = self.manager.get(request.match_info["id"])
        except KeyError:
            return self._unknown(request)
        return web.json_response(await self._run(session.describe))

    async def _delete(self, request: web.Request) -> web.Response:
        try:
            session = await self._run(self.manager.stop, request.match_info["id"])
        except KeyError:
            return self._unknown(request)
        return web.json_response(await self._run(session.describe))

    def _unknown(self, request: web.Request) -> web.Response:
        return error(404, f"no session {request.match_info['id']!r}: GET /v1/sessions lists those there are")

    async def _capacity(self, request: web.Request) -> web.Response:
        return web.json_response(await self._run(self._capacity_now))

    def _capacity_now(self) -> dict[str, Any]:
        capacity = self.manager.capacity
        active = [s.spec for s in self.manager.sessions() if s.state != ENDED]
        video = sum(s.video for s in active)
        measured = self.manager.measured()
        return {"limits": capacity.limits(), "sessions": {"audio": len(active) - video, "video": video},
                "load": asdict(capacity.load(len(active) - video, video)), "cores": capacity.config.cores,
                "measured": None if measured is None else asdict(measured)}  # fmt: skip

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self._run(self.metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def close(self) -> None:
        """Wait for joins under way (their sessions are then stopped by the manager's close)."""
        self._executor.shutdown(wait=True)
