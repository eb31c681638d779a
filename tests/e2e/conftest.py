"""Fixtures of the browser end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import netns


@pytest.fixture(scope="session")
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """The shared random-weight tiny model directory (tests/conftest.py; in a namespace run, its outer run's)."""
    return netns.tiny_model(request)
