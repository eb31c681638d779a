"""A built-in room served from a background thread, for `reactdiff-engine --room local`.

with LocalRoom() as url:          # http://127.0.0.1:8080/r/<room>?token=...
    ...                           # open `url` in a browser; the engine joins the same URL
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from engine.room_server.server import RoomServer, ServerConfig

DEFAULT_PORT = 8080
START_TIMEOUT_S = 10.0


class LocalRoom:
    """`reactdiff-room` on 127.0.0.1 in its own event-loop thread, with one room; `close()` is safe twice."""

    def __init__(self, port: int = DEFAULT_PORT) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reactdiff-local-room", daemon=True)
        self._server: RoomServer | None = None
        self._port = port
        self.url = ""

    def start(self) -> str:
        """Start listening (on `port`, or any free port when it is taken) and return the room URL."""
        self._thread.start()
        for port in (self._port, 0):
            server = RoomServer(ServerConfig(host="127.0.0.1", port=port))
            try:
                asyncio.run_coroutine_threadsafe(server.start(), self._loop).result(START_TIMEOUT_S)
            except OSError:  # the port is in use: take a free one
                asyncio.run_coroutine_threadsafe(server.stop(), self._loop).result(START_TIMEOUT_S)
                continue
            self._server = server
            self.url = server.create_room().url(server.base_url)
            return self.url
        self.close()
        raise OSError("could not listen on 127.0.0.1 for the local room")

    def close(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(START_TIMEOUT_S)
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_S)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
