"""Fixtures of the browser end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny model directory (exported in a few seconds)."""
    from trainer.config import ModelConfig, RunConfig
    from trainer.export import export_model, save_untrained_model

    root = tmp_path_factory.mktemp("room-model")
    tiny = ModelConfig(window=16, hop=4, d_model=32, heads=2, denoiser_layers=1, ae_width=32, latent_channels=8)
    weights = save_untrained_model(RunConfig(model=tiny), root / "run" / "model.pt", seed=3)
    export_model(weights, root / "model", fused=[("dpmpp2m", 4)], progress=False)
    return root / "model"
