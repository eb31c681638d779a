"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import ModelConfig

# The model sizes every engine-side test runs: random weights, exported in a few seconds.
TINY = ModelConfig(window=16, hop=4, d_model=32, heads=2, denoiser_layers=1, ae_width=32, latent_channels=8)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny model directory, as `reactdiff-trainer export` writes it (fused K=4 graph included)."""
    from trainer.config import RunConfig
    from trainer.export import export_model, save_untrained_model

    root = tmp_path_factory.mktemp("tiny-model")
    weights = save_untrained_model(RunConfig(model=TINY), root / "run" / "model.pt", seed=3)
    export_model(weights, root / "model", fused=[("dpmpp2m", 4)], progress=False)
    return root / "model"
