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


# Two named listeners for the engine's persona tests: styles far from the null style (random weights react to them)
# and energies a factor of four apart.
PERSONAS = {"nodder": 0.02, "reserved": 0.005}


@pytest.fixture(scope="session")
def persona_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight model exported with named personas (PERSONAS), as `fit` stores them in its run."""
    import numpy as np
    import torch

    from trainer.config import RunConfig
    from trainer.export import export_model, save_untrained_model

    root = tmp_path_factory.mktemp("persona-model")
    weights = save_untrained_model(RunConfig(model=TINY), root / "run" / "model.pt", seed=3)
    state = torch.load(weights, map_location="cpu", weights_only=False)
    rng = np.random.default_rng(13)
    state["personas"] = {name: {"style": rng.normal(0.0, 1.0, TINY.d_model).tolist(), "energy": energy}
                         for name, energy in PERSONAS.items()}  # fmt: skip
    torch.save(state, weights)
    export_model(weights, root / "model", fused=[("dpmpp2m", 4)], progress=False)
    return root / "model"
