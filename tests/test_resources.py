"""tests.resources: the leak check fails on a descriptor or a thread left open, and passes once they are closed."""

from __future__ import annotations

import os
import threading

import pytest

from tests.resources import Resources, no_resource_growth


def test_a_leaked_descriptor_fails_the_check_and_names_it(tmp_path):
    path = tmp_path / "left-open.txt"
    path.write_text("x")
    leaked = r"file descriptors \d+ -> \d+ \(new: .*left-open\.txt"
    with pytest.raises(AssertionError, match=leaked), no_resource_growth(settle_s=0.05):
        fd = os.open(path, os.O_RDONLY)
    os.close(fd)
    with no_resource_growth(settle_s=0.05) as watch:
        os.close(os.open(path, os.O_RDONLY))
    assert watch.after is not None and watch.after.fds <= watch.before.fds


def test_a_thread_still_running_fails_the_check_and_one_that_ends_passes():
    stop = threading.Event()
    lingering = r"Python threads \d+ -> \d+ .*'lingering'.*OS threads"
    with pytest.raises(AssertionError, match=lingering), no_resource_growth(settle_s=0.05):
        threading.Thread(target=stop.wait, name="lingering").start()
    stop.set()
    with no_resource_growth(settle_s=2.0):  # the thread is told to stop inside the block, exits just after
        done = threading.Event()
        threading.Thread(target=done.wait).start()
        done.set()
    assert Resources.now().tasks >= 1
