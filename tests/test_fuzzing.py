"""tests.fuzzing: the hang guard, and damaged bytes that really differ from the original."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given

from tests.fuzzing import FUZZ, damaged, within


def test_within_re_raises_a_failure_and_fails_a_hang_without_waiting_for_it():
    with pytest.raises(ValueError, match="inside"):
        within(lambda: (_ for _ in ()).throw(ValueError("inside")))
    release = threading.Event()
    with pytest.raises(AssertionError, match=r"still running after 0.05 s: a hang"):
        within(lambda: release.wait(10), timeout_s=0.05)
    release.set()


ORIGINAL = bytes(range(256)) * 4


@FUZZ
@given(damaged(ORIGINAL))
def test_damaged_bytes_always_differ_from_the_original(data: bytes) -> None:
    assert data != ORIGINAL
