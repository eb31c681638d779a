"""Sessions: one call each (a room joined, an avatar, a stream engine), all sharing one inference scheduler.

    manager = SessionManager(model, scheduler, capacity, SessionDefaults(size=(640, 480)))
    session = manager.create(SessionSpec(room="http://HOST/r/ROOM?token=...", avatar="glasses", video=True))
    manager.sessions()                      # every session, with live stats (Session.describe)
    manager.stop(session.id)                # leaves the room; safe twice
    manager.close()                         # stops them all

`create` and `stop` block (a room join takes up to seconds, a photo avatar is prepared): call them off the event
loop. Each session is what `reactdiff-engine --room URL` runs, in this process: a RoomSession (its own event-loop
thread moves the bytes), a StreamEngine (reader, tracker, inference and player threads behind bounded queues), its
own face tracker when it tracks video, and a client of the shared scheduler in place of a backend of its own, so
its frames are those it would get alone for the same seed. A session ends by itself when its room is lost or
closed; it stays listed, with its error, until it is stopped.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from engine.listener import ANYONE, ListenerChoices
from engine.model_dir import ModelDir
from engine.rooms.session import RoomSession, stats_summary
from engine.runtime import StreamConfig, StreamEngine, WindowModel
from engine.runtime.timelines import Emitted
from engine.serving.admission import Capacity, LoadMeter, Measured
from engine.serving.metrics import SessionFigures
from engine.serving.scheduler import BatchScheduler
from engine.sources.base import Source
from engine.windows import check_temperature
from renderer.avatar import create_avatar
from renderer.sinks import Sink

log = logging.getLogger(__name__)

JOINING, RUNNING, ENDED, STOPPED = "joining", "running", "ended", "stopped"


class Call(Protocol):
    """Where a session's media come from and go to: engine.rooms.session.RoomSession, or a stand-in (benchmarks)."""

    error: Any

    @property
    def source(self) -> Source: ...

    def make_sink(self, width: int, height: int) -> Sink: ...

    def publish(self, emitted: Emitted) -> None: ...

    def set_stats_source(self, fn: Callable[[], dict[str, float | str | None]]) -> None: ...

    def close(self) -> None: ...


CallOpener = Callable[["SessionSpec", tuple[int, int]], Call]


def join_room(spec: SessionSpec, size: tuple[int, int]) -> Call:
    """The default opener: join spec.room (RoomError or RoomURLError, one line, if it cannot be)."""
    room = RoomSession(spec.room, size=size)
    room.start()
    return room


@dataclass(frozen=True)
class SessionSpec:
    """What a client asks for (the API's POST /v1/sessions body)."""

    room: str
    """The call to join: http(s)://HOST:PORT/r/ROOM?token=... (reactdiff-room) or janus+ws://HOST:8188/?room=ID."""
    avatar: str = "default"
    """A drawn style or a portrait file on the server (as reactdiff-engine --avatar)."""
    video: bool = True
    """Track the speaker's face; False: audio only (less CPU: more sessions fit)."""
    seed: int = 0
    """Noise seed: the same seed gives the same reactions as reactdiff-engine --seed."""
    persona: str | None = None
    """Who listens: one of the model's named personas (a model directory of format version 2); None: no one in
    particular."""
    expressiveness: float | None = None
    """How much the listener moves, times the persona's own motion (as reactdiff-engine --expressiveness, 0.25 to
    2.5); None: as the persona's style moves."""
    temperature: float = 1.0
    """Scale of each window's initial noise, as reactdiff-engine --temperature (0 to 1.5)."""


@dataclass(frozen=True)
class SessionDefaults:
    """What every session of a server shares."""

    size: tuple[int, int] = (640, 480)
    """Avatar (width, height) in pixels."""
    hop: int | None = None
    """Frames between windows (None: the model's)."""
    face_model: Path | None = None
    """MediaPipe face_landmarker.task (None: the installed copy)."""
    playout_delay_s: float | None = None
    """A fixed input-to-display delay (None: adaptive)."""


class Session:
    """One call's parts and the thread that runs its engine."""

    def __init__(self, spec: SessionSpec, engine: StreamEngine, call: Call, parts: list[Any]) -> None:
        self.id = secrets.token_hex(6)
        self.spec, self.engine, self.call = spec, engine, call
        self.created = time.time()
        self.state = RUNNING
        self.error: str | None = None
        self._parts = parts  # closed at the end, after the call: tracker, avatar, scheduler client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reactdiff-session-{self.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.engine.run(stop=self._stop)
        except Exception as exc:  # the session ends with its error; the server and the other sessions go on
            log.warning("session %s failed: %r", self.id, exc)
            self.error = str(exc)
        finally:
            self.call.close()
            for part in self._parts:
                part.close()
            if self.error is None and not self._stop.is_set():
                self.error = str(self.call.error or "the call ended")
            self.state = ENDED

    def stop(self) -> None:
        """Leave the call and stop every thread of the session; safe twice."""
        self._stop.set()
        self._thread.join()

    def figures(self) -> SessionFigures:
        stats = self.engine.stats
        with stats.lock:
            frames, missed, filled = stats.frames_generated, stats.windows_dropped, stats.frames_filled
        delay = stats_summary(stats)["engine_delay_ms"]
        return SessionFigures(self.id, self.state, frames, missed, filled,
                              None if delay is None else float(delay) / 1000)  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """The API's view: the request, the state, the live stats (those the room page shows, and more)."""
        stats = self.engine.stats.to_json()
        return {
            "id": self.id, "room": self.spec.room, "avatar": self.spec.avatar, "video": self.spec.video,
            "seed": self.spec.seed, "persona": self.spec.persona, "expressiveness": self.spec.expressiveness,
            "temperature": self.spec.temperature, "state": self.state, "error": self.error,
            "created": self.created,
            "stats": stats_summary(self.engine.stats) | {
                "media_s": round(stats["media_s"], 2), "windows_run": stats["windows"]["run"],
                "frames_generated": stats["frames"]["generated"], "latency_p95_ms": stats["latency_ms"]["p95_ms"],
            },
        }  # fmt: skip


def window_inputs(model: ModelDir, spec: SessionSpec) -> dict[str, NDArray[np.float32]]:
    """Who listens in `spec`, as the window arguments `style` (1,D) and `expressiveness` (1,2) (none: no one in
    particular, as the style moves); ValueError (one line) for a persona, expressiveness or temperature the model
    cannot take."""
    check_temperature(spec.temperature)
    style = persona_style(model, spec.persona)
    if spec.expressiveness is None:
        return {} if style is None else {"style": style}
    styles = model.style
    if styles is None:
        raise ValueError(f"expressiveness {spec.expressiveness}: this model takes none (a model directory of format "
                         "version 1); leave it out or serve a model trained with personas")  # fmt: skip
    listener = ListenerChoices.from_model(model).choose(spec.persona or ANYONE, spec.expressiveness)
    return listener.window_inputs(styles.energy_mean)


def persona_style(model: ModelDir, name: str | None) -> NDArray[np.float32] | None:
    """The style (1, D) of the model's persona `name` (None: none); ValueError naming the ones there are."""
    if name is None:
        return None
    styles = model.style
    if styles is None:
        raise ValueError(f"persona {name!r}: this model has no personas (a model directory of format version 1); "
                         "leave the persona out or serve a model trained with personas")  # fmt: skip
    if name not in styles.personas:
        known = ", ".join(sorted(styles.personas)) or "none"
        raise ValueError(f"persona {name!r}: this model knows {known}")
    return ListenerChoices.from_model(model).personas[name].style[None]  # style guidance applied there


class SessionManager:
    """Creates, lists and stops sessions; thread-safe."""

    def __init__(
        self, model: ModelDir, scheduler: BatchScheduler, capacity: Capacity, defaults: SessionDefaults,
        open_call: CallOpener = join_room, measure_load: bool = True,
    ) -> None:  # fmt: skip
        """`measure_load`: admission also looks at the machine's load and the sessions' missed windows now
        (engine.serving.admission.LoadMeter); False: the load model alone."""
        self.model, self.scheduler, self.capacity, self.defaults = model, scheduler, capacity, defaults
        self.open_call = open_call
        self._stopped = SessionFigures("stopped", STOPPED, 0, 0, 0, None)  # the totals of sessions stopped so far
        self._sessions: dict[str, Session] = {}
        self._joining: list[SessionSpec] = []
        self._lock = threading.Lock()
        self.meter = LoadMeter(self.missed) if measure_load else None

    def measured(self) -> Measured | None:
        """The load the meter sees now (None without one)."""
        return self.meter.now() if self.meter is not None else None

    def create(self, spec: SessionSpec) -> Session:
        """Admit, open the call, start the engine. ValueError for a persona the model does not have, AdmissionError
        when it does not fit; the call's own errors (RoomError, RoomURLError), a bad avatar (ValueError, OSError)
        and a missing face model (FaceModelError) leave nothing behind."""
        window_inputs(self.model, spec)
        self._reserve(spec)
        try:
            session = self._open(spec)
        finally:
            with self._lock:
                self._joining.remove(spec)
        with self._lock:
            self._sessions[session.id] = session
        session.start()
        log.info("session %s: %s (%s)", session.id, spec.room, "video" if spec.video else "audio only")
        return session

    def _reserve(self, spec: SessionSpec) -> None:
        with self._lock:
            active = [s.spec for s in self._sessions.values() if s.state != ENDED] + self._joining
            video = sum(s.video for s in active)
            self.capacity.admit(len(active) - video, video, new_video=spec.video, measured=self.measured())
            self._joining.append(spec)

    def _open(self, spec: SessionSpec) -> Session:
        """The session's parts; whatever was opened is closed again if a later part fails."""
        d = self.defaults
        parts: list[Any] = []
        try:
            parts.append(create_avatar(spec.avatar, width=d.size[0], height=d.size[1]))
            if spec.video:
                from engine.tracker import FaceTracker

                parts.append(FaceTracker(d.face_model))
            call = self.open_call(spec, d.size)
            parts.append(call)
            parts.append(self.scheduler.client())
            return self._session(spec, call, parts)
        except BaseException:
            for part in reversed(parts):
                part.close()
            raise

    def _session(self, spec: SessionSpec, call: Call, parts: list[Any]) -> Session:
        """`parts`: the avatar, the tracker (video only), the call and the scheduler client."""
        d, avatar, client = self.defaults, parts[0], parts[-1]
        config = StreamConfig(
            hop=d.hop,
            seed=spec.seed,
            realtime=True,
            size=d.size,
            live_sink=True,
            playout_delay_s=d.playout_delay_s,
            temperature=spec.temperature,
        )
        run_window = functools.partial(client.run_window, **window_inputs(self.model, spec))
        engine = StreamEngine(
            WindowModel.from_model(self.model, run_window), call.source, make_sink=call.make_sink,
            tracker=parts[1] if spec.video else None, config=config, on_emitted=call.publish, avatar=avatar,
        )  # fmt: skip
        call.set_stats_source(lambda: stats_summary(engine.stats))
        return Session(spec, engine, call, [p for p in parts if p is not call])

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def get(self, session_id: str) -> Session:
        """KeyError (with the id) when there is no such session."""
        with self._lock:
            return self._sessions[session_id]

    def stop(self, session_id: str) -> Session:
        """Stop a session and forget it; returns it (its final stats). KeyError when there is none."""
        with self._lock:
            session = self._sessions.pop(session_id)
        session.stop()
        last = session.figures()
        with self._lock:
            before = self._stopped
            self._stopped = SessionFigures(
                before.id, STOPPED, before.frames + last.frames, before.windows_missed + last.windows_missed,
                before.frames_filled + last.frames_filled, None,
            )  # fmt: skip
        log.info("session %s stopped", session_id)
        return session

    def figures(self) -> list[SessionFigures]:
        """Every session's figures, and the totals of those stopped (for the metrics: counters never go down)."""
        with self._lock:
            joining = [SessionFigures("", JOINING, 0, 0, 0, None) for _ in self._joining]
        return [*(s.figures() for s in self.sessions()), *joining, self._stopped]

    def missed(self) -> int:
        """Windows missed so far by every session, stopped ones included."""
        return sum(f.windows_missed for f in self.figures())

    def close(self) -> None:
        """Stop every session and the load meter."""
        for session in self.sessions():
            self.stop(session.id)
        if self.meter is not None:
            self.meter.close()
