"""Counting a test's threads and file descriptors, to show that code under test leaves none behind.

    from tests.resources import no_resource_growth

    def test_fuzzed_inputs_leave_nothing_open():
        with no_resource_growth() as watch:
            run_many_cases()
        # watch.before / watch.after hold the counts, e.g. for a report

`no_resource_growth` takes a snapshot before the block and, after it, waits up to `settle_s` seconds for
threads to finish exiting (native threads and Python threads end asynchronously after a join or a close),
then fails the test if any count is still above the snapshot, listing the descriptors that appeared.
Counts that fall are fine. Linux only: it reads /proc/self.

Three counts are kept, because each catches leaks the others miss:
- `fds`: entries of /proc/self/fd (files, sockets, pipes, eventfds);
- `threads`: `threading.active_count()`, the Python threads;
- `tasks`: entries of /proc/self/task, every OS thread, including those native libraries start
  (FFmpeg's decoder threads, ONNX Runtime's thread pools) that Python never sees.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_FD_DIR = "/proc/self/fd"
_TASK_DIR = "/proc/self/task"


def open_fds() -> dict[int, str]:
    """This process's open descriptors: number -> what it points at (a path, 'socket:[…]', 'pipe:[…]', …)."""
    fds = {}
    for name in os.listdir(_FD_DIR):
        try:
            fds[int(name)] = os.readlink(f"{_FD_DIR}/{name}")
        except OSError:  # closed between listdir and readlink (listdir's own descriptor, for one)
            continue
    return fds


@dataclass(frozen=True)
class Resources:
    """A snapshot of what the process holds; `fd_targets` keeps what each descriptor points at."""

    fds: int
    threads: int
    tasks: int
    fd_targets: dict[int, str] = field(repr=False, compare=False)

    @classmethod
    def now(cls) -> Resources:
        targets = open_fds()
        return cls(len(targets), threading.active_count(), len(os.listdir(_TASK_DIR)), targets)

    def grown_from(self, before: Resources) -> list[str]:
        """What this snapshot holds beyond `before`, one line per count that grew (empty when none did)."""
        grown = []
        if self.fds > before.fds:
            new = {fd: t for fd, t in self.fd_targets.items() if before.fd_targets.get(fd) != t}
            grown.append(f"file descriptors {before.fds} -> {self.fds} (new: {new})")
        if self.threads > before.threads:
            names = sorted(t.name for t in threading.enumerate())
            grown.append(f"Python threads {before.threads} -> {self.threads} (now: {names})")
        if self.tasks > before.tasks:
            grown.append(f"OS threads {before.tasks} -> {self.tasks}")
        return grown


@dataclass
class ResourceWatch:
    """The counts before and after a `no_resource_growth` block (`after` is set once the block has settled)."""

    before: Resources
    after: Resources | None = None


def settled(before: Resources, timeout_s: float) -> Resources:
    """Snapshots every 10 ms until none of the counts exceeds `before`, or `timeout_s` passes; returns the last."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = Resources.now()
        if not now.grown_from(before) or time.monotonic() >= deadline:
            return now
        time.sleep(0.01)


@contextmanager
def no_resource_growth(settle_s: float = 2.0) -> Iterator[ResourceWatch]:
    """Fail (AssertionError) when the block leaves more descriptors, Python threads or OS threads than it found."""
    watch = ResourceWatch(Resources.now())
    yield watch
    watch.after = settled(watch.before, settle_s)
    grown = watch.after.grown_from(watch.before)
    assert not grown, "resources left behind: " + "; ".join(grown)
