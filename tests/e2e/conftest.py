"""Fixtures of the browser end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> Path:
    """The shared random-weight tiny model directory (tests/conftest.py)."""
    return tiny_model_dir
