"""Ctrl-C and SIGTERM that stop the engine at a safe point, so the output is finished and nothing hangs.

    with StopSignals("reactdiff-engine") as stop:
        backend = open_backend()
        stop.check()                        # raises KeyboardInterrupt here if a stop was asked for
        engine.run(stop=stop.requested)     # returns early once a stop is asked for

Python's own Ctrl-C raises KeyboardInterrupt at whatever bytecode the main thread runs, including inside a
library's import or a C extension that swallows it: the stop is then lost (the engine runs on) or the process
later kills itself with SIGINT. Here the first signal only sets `requested`; the engine polls it. A second
signal exits at once (status 128 + signal number), for when a stop takes too long.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import FrameType, TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_S = 0.05


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal, with the shell's status for it (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str = "", exit_status: int = 128 + signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class StopSignals:
    """Turns SIGINT/SIGTERM into a `requested` event while active (main thread only; elsewhere it does nothing)."""

    def __init__(self, prog: str, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.prog = prog
        self.signals = signals
        self.requested = threading.Event()
        self.signum: int | None = None  # the first stop signal received
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def exit_status(self) -> int:
        """The shell's status for a run stopped by the signal: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + (self.signum if self.signum is not None else signal.SIGINT)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():  # asked twice: the user wants out now
            os.write(2, f"{self.prog}: stopped at once\n".encode())
            os._exit(128 + signum)
        self.signum = signum
        self.requested.set()
        hint = " (press Ctrl-C again to quit at once)" if signum == signal.SIGINT else ""
        os.write(2, f"{self.prog}: stopping{hint}\n".encode())

    def interrupted(self, message: str = "") -> Interrupted:
        """The exception that ends a command stopped by the signal received (`message`: what was kept, say)."""
        return Interrupted(message, self.exit_status)

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was asked for (call between steps that must not be cut)."""
        if self.requested.is_set():
            raise KeyboardInterrupt

    def wait(self, future: Future[T]) -> T:
        """`future.result()`, but a stop request cancels the future and raises KeyboardInterrupt."""
        while not self.requested.is_set():
            with contextlib.suppress(FutureTimeout):
                return future.result(POLL_S)
        future.cancel()
        raise KeyboardInterrupt
