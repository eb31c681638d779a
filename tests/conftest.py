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


def version_1_model(model: Path, out: Path) -> Path:
    """The model directory `model` as one of format version 1 (before listeners had a style), written to `out`: no
    style section or style graph, and each ONNX graph's style and expressiveness inputs turned into constants (the
    null style, no expressiveness), so the graphs take a batch of 1 and run what a version-1 export would."""
    import json
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from engine.model_dir import MANIFEST, file_entry

    shutil.copytree(model, out)
    manifest = json.loads((out / MANIFEST).read_text())
    style = manifest.pop("style")
    constants = {
        "style": np.asarray(style["null"], np.float32)[None],
        "expressiveness": np.zeros((1, 2), np.float32),
    }
    graphs = manifest["graphs"]
    style_onnx = graphs.pop("style")["onnx"]  # its torch program goes with the others below
    (out / style_onnx).unlink()
    manifest["files"].pop(style_onnx)
    for spec in graphs.values():
        spec["inputs"] = [i for i in spec["inputs"] if i["name"] not in constants]
        proto = onnx.load(out / spec["onnx"])
        for tensor in [i for i in proto.graph.input if i.name in constants]:
            proto.graph.input.remove(tensor)
            proto.graph.initializer.append(numpy_helper.from_array(constants[tensor.name], tensor.name))
        onnx.save(proto, out / spec["onnx"])
        manifest["files"][spec["onnx"]] = file_entry(out / spec["onnx"])
        spec["torch"] = None  # the torch programs keep their style arguments: this directory is ONNX only
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.endswith(".pt2")}
    for path in out.glob("*.pt2"):
        path.unlink()
    manifest["format_version"] = 1
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="session")
def version_1_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a directory of format version 1 (no style input: it takes no persona)."""
    return version_1_model(tiny_model_dir, tmp_path_factory.mktemp("tiny-v1") / "model")
