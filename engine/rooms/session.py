"""A room as the streaming engine sees it: a source (the active speaker), a sink (the avatar published into
the room) and a reactions publisher, with the room client on its own event-loop thread.

    session = RoomSession("http://127.0.0.1:8080/r/ROOM?token=...", size=(256, 256), controls=control)
    join_s = session.start()                       # RoomError (one line) if the room cannot be joined
    engine = StreamEngine(model, session.source, make_sink=session.make_sink, config=StreamConfig(realtime=True))
    engine.run()                                   # the source ends when the room is lost or closed
    session.close()
    if session.error: raise session.error

`controls` (optional, engine.listener.ListenerControl): who listens, changed by the pages' control messages
(engine.rooms.control) and shown to all of them; the engine's windows read it.

The asyncio loop only moves bytes (signaling, RTP, data channel); the engine's threads do the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.rooms.base import ReconnectPolicy, RoomClient, RoomError
from engine.rooms.builtin import BuiltinRoomClient
from engine.rooms.janus import JanusRoomClient
from engine.rooms.reactions import ReactionFrame, encode_reaction
from engine.rooms.urls import RoomKind, RoomURL, parse_room_url
from engine.runtime.timelines import Emitted
from engine.sources.webrtc import WebRTCSource
from renderer.face import EMOTION_DIM, FACE_DIM, FPS
from renderer.sinks import Sink, TeeSink
from renderer.track import WebRTCSink

if TYPE_CHECKING:
    from engine.interrupt import StopSignals
    from engine.listener import ListenerControl

log = logging.getLogger(__name__)


def make_client(
    url: RoomURL, avatar: Any, reconnect: ReconnectPolicy | None = None, controls: ListenerControl | None = None
) -> RoomClient:
    """The room client for a URL's kind; `controls` (who listens, changed from the pages) in a built-in room only:
    Janus participants have no data channel to the engine."""
    if url.kind is RoomKind.JANUS:
        return JanusRoomClient(url, avatar, reconnect=reconnect)
    return BuiltinRoomClient(url, avatar, reconnect=reconnect, controls=controls)


RECENT_FRAMES = 90  # avatar frames the page's figures cover (3 s at 30 fps)


def stats_summary(stats: Any) -> dict[str, float | str | None]:
    """What the room page shows beside the avatar, from engine.stats.StreamStats: the engine's part of the delay a
    viewer sees (`engine_delay_ms`: the median, over the last 3 s of avatar frames, from the newest speaker input
    each depended on reaching the engine to the frame going to the encoder; the page adds the network and its own
    encoding and decoding to it), the playout delay in it, the window's compute time, fps and what went missing."""
    with stats.lock:
        fps = stats.output_frames / stats.wall_s if stats.wall_s > 0 else 0.0
        delays = list(stats.delays_s[-RECENT_FRAMES:])
        compute = list(stats.latencies_s[-RECENT_FRAMES:])
        playout = stats.playout_delays_s[-1] if stats.playout_delays_s else None
        dropped, filled = stats.windows_dropped, stats.frames_filled
    ms = lambda x: None if x is None else round(float(x) * 1000, 1)  # noqa: E731
    return {
        "engine_delay_ms": ms(np.median(delays)) if delays else None, "playout_delay_ms": ms(playout),
        "compute_p95_ms": ms(np.percentile(compute, 95)) if compute else None, "fps": round(fps, 1),
        "windows_dropped": dropped, "frames_filled": filled,
    }  # fmt: skip


def reaction_frames(emitted: Emitted, sent_s: float) -> list[ReactionFrame]:
    """One reactions-channel frame per emitted listener frame (face and, where present, emotion)."""
    frames = []
    for i, row in enumerate(np.asarray(emitted.smoothed, np.float32)):
        emotion = row[FACE_DIM : FACE_DIM + EMOTION_DIM] if len(row) >= FACE_DIM + EMOTION_DIM else None
        index = emitted.first + i
        frames.append(ReactionFrame(index, index / FPS, sent_s, row[:FACE_DIM], emotion))
    return frames


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aiortc's own tasks (a connection's ICE/DTLS start-up) can fail on what a peer sent; the peer's connection is
    closed by its watchdog (engine.rooms.base.PeerLimits), so one line is enough, with the traceback at debug level."""
    error = context.get("exception")
    log.warning("room event loop: %s%s", context.get("message", "error"), f" ({error!r})" if error else "")
    log.debug("room event loop error", exc_info=error)


class RoomSession:
    """The room client on a background event loop, and the engine-facing source/sink/reactions around it."""

    def __init__(
        self, url: str | RoomURL, *, size: tuple[int, int] = (256, 256), fps: float = 30.0,
        reconnect: ReconnectPolicy | None = None, stats_every_s: float = 1.0, controls: ListenerControl | None = None,
    ) -> None:  # fmt: skip
        self.url = parse_room_url(url) if isinstance(url, str) else url
        self.controls = controls  # who listens, changed from the room's pages (engine.rooms.control)
        self.sink = WebRTCSink(width=size[0], height=size[1], fps=fps)
        self.error: RoomError | None = None
        self.reactions_sent = 0
        self.stats_every_s = stats_every_s
        self._reconnect = reconnect
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_log_loop_error)
        self._thread = threading.Thread(target=self._loop.run_forever, name="reactdiff-room", daemon=True)
        self._client: RoomClient | None = None
        self._source: WebRTCSource | None = None
        self._serve: asyncio.Task[None] | None = None
        self._stats_fn: Callable[[], dict[str, float | str | None]] | None = None
        self._closed = False

    @property
    def source(self) -> WebRTCSource:
        """The active speaker's media (start() first); it ends when the room is lost or closed."""
        if self._source is None:
            raise RuntimeError("RoomSession.start() must be called before using the source")
        return self._source

    @property
    def client(self) -> RoomClient:
        if self._client is None:
            raise RuntimeError("RoomSession.start() must be called first")
        return self._client

    def call(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the session's loop from another thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, stop: StopSignals | None = None) -> float:
        """Join the room; returns the seconds joining took. Raises RoomError (and cleans up) if it cannot, and
        KeyboardInterrupt (after cleaning up) when `stop` is asked for while joining."""
        self._thread.start()
        start = time.monotonic()
        try:
            joining = asyncio.run_coroutine_threadsafe(self._join(), self._loop)
            if stop is None:
                joining.result()
            else:
                stop.wait(joining)
        except BaseException:
            self.close()
            raise
        return time.monotonic() - start

    async def _join(self) -> None:
        self._client = make_client(self.url, self.sink.track, self._reconnect, self.controls)
        await self._client.join()
        self._source = WebRTCSource(audio=self._client.switch.audio, video=self._client.switch.video)
        self._source.start()
        self._serve = asyncio.create_task(self._serve_room(), name="room-serve")

    async def _serve_room(self) -> None:
        assert self._client is not None
        stats = asyncio.create_task(self._send_stats(), name="room-stats")
        try:
            await self._client.serve()
        except RoomError as err:
            self.error = err
            log.error("%s", err)
        except Exception as err:  # a bug, not the user's: keep the traceback in the log, end with a clear error
            log.exception("the room client failed")
            self.error = RoomError(f"room {self.url.room}: the engine's room client failed ({err!r}); see the log")
        finally:
            stats.cancel()
            await asyncio.gather(stats, return_exceptions=True)
            if self._source is not None:
                self._source.close()  # ends the engine's run

    async def _send_stats(self) -> None:
        while True:
            await asyncio.sleep(self.stats_every_s)
            if self._stats_fn is not None and self._client is not None:
                self._client.send_stats(self._stats_fn())

    def make_sink(self, width: int, height: int) -> Sink:
        """The engine's SinkFactory: the avatar track published into the room (its size is fixed at start)."""
        if (width, height) != (self.sink.width, self.sink.height):
            raise ValueError(
                f"the room avatar is {self.sink.width}x{self.sink.height} but the engine renders {width}x{height}; "
                "use the same --size and no --side-by-side with --room"
            )
        return self.sink

    def sink_factory(self, also: Callable[[int, int], Sink] | None = None) -> Callable[[int, int], Sink]:
        """The engine's SinkFactory: the room's avatar track, plus `also` (e.g. a virtual camera) if given."""
        if also is None:
            return self.make_sink
        return lambda width, height: TeeSink(
            sinks=[self.make_sink(width, height), also(width, height)], width=width, height=height
        )

    def counters(self) -> dict[str, int]:
        """What happened to the participants' connections (engine.rooms.base.PeerCounters), plus the peer
        connections open now and the reconnects so far; safe from any thread (plain int reads)."""
        client = self._client
        if client is None:
            return {}
        return client.counters.as_dict() | {"peers": len(client.peers), "reconnects": client.reconnects}

    def set_stats_source(self, fn: Callable[[], dict[str, float | str | None]]) -> None:
        """`fn()` (called on the loop every stats_every_s) gives the stats shown to the room's participants."""
        self._stats_fn = fn

    def publish(self, emitted: Emitted) -> None:
        """Send emitted listener frames on the reactions channel (thread-safe, never blocks)."""
        if self._closed or self._client is None:
            return
        messages = [encode_reaction(f) for f in reaction_frames(emitted, time.time())]
        self._loop.call_soon_threadsafe(self._send_reactions, messages)

    def _send_reactions(self, messages: list[bytes]) -> None:
        if self._client is not None:
            for message in messages:
                self.reactions_sent += self._client.send_reaction(message)

    def close(self) -> None:
        """Leave the room and stop the loop thread; safe twice."""
        if self._closed:
            return
        self._closed = True
        if self._source is not None:
            self._source.close()
        self.sink.close()
        if self._thread.is_alive():
            try:
                self.call(self._shutdown(), timeout=10)
            except (concurrent.futures.TimeoutError, RuntimeError) as err:
                log.warning("leaving the room did not finish cleanly: %r", err)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._serve is not None:
            self._serve.cancel()
            await asyncio.gather(self._serve, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_default_executor()  # aiortc's encoder threads
