"""`reactdiff-trainer export` / `build-engine`: the model directory a user gets, and its ONNX graphs' numerics."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from engine.diffusion import CosineSchedule
from engine.model_dir import load_model_dir, sha256_file
from tests.conftest import TINY
from trainer.cli import main
from trainer.config import RunConfig
from trainer.export import parse_fused, save_untrained_model
from trainer.train import load_model

pytestmark = pytest.mark.slow  # the module fixture exports a model through the CLI: ~10 s once


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    weights = save_untrained_model(RunConfig(model=TINY), root / "run" / "model.pt", seed=1)
    code = main(
        ["export", "--run", str(root / "run"), "--out", str(root / "model"), "--fused", "1,ddim:2", "--no-progress"]
    )
    assert code == 0
    return root / "model", weights


def test_manifest_records_what_the_engine_needs(exported):
    out, weights = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["tier"], manifest["window"], manifest["hop"], manifest["latent_shape"]) == ("tiny", 16, 4, [4, 8])
    assert manifest["model_id"] == sha256_file(weights)
    assert manifest["data"]["frames"] == 2000 and manifest["sampling"]["steps"] == TINY.default_steps
    table = np.array(manifest["schedule"]["alpha_sigma"])
    np.testing.assert_allclose(table, CosineSchedule(TINY.train_timesteps).alpha_sigma_table(), atol=1e-7)
    model = load_model(weights)
    np.testing.assert_allclose(manifest["normalisation"]["listener"]["std"], model.listener_norm.std.numpy())
    assert set(manifest["graphs"]) == {
        "condition", "denoiser", "decoder", "style", "window_dpmpp2m_k1", "window_ddim_k2"
    }  # fmt: skip
    style = manifest["style"]
    assert style["reference_frames"] == TINY.style_frames and len(style["null"]) == TINY.d_model
    memory = manifest["graphs"]["condition"]["outputs"][0]
    assert memory == {"name": "memory", "dtype": "float32", "shape": ["2*batch", 32, 32]}
    for name, entry in manifest["files"].items():
        assert sha256_file(out / name) == entry["sha256"] and (out / name).stat().st_size == entry["bytes"]


def test_onnx_graphs_match_the_model_at_batch_one(exported):
    out, weights = exported
    model = load_model(weights)
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((1, 4, 8)).astype(np.float32)
    session = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = model.decode_listener(torch.from_numpy(latents)).numpy()
    np.testing.assert_allclose(session.run(None, {"latents": latents})[0], want, atol=1e-4)
    x = rng.standard_normal((1, 4, 8)).astype(np.float32)
    memory = rng.standard_normal((2, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(out / "denoiser.onnx"), providers=["CPUExecutionProvider"])
    coef = np.array([0.6, 0.8, 2.0], np.float32)
    style = rng.standard_normal((1, 32)).astype(np.float32)
    level = np.array([[0.4, 1.0]], np.float32)
    feeds = {"x": x, "t": np.array([500.0], np.float32), "memory": memory, "coef": coef}
    got = session.run(None, feeds | {"style": style, "expressiveness": level})[0]
    two = lambda a: torch.from_numpy(np.concatenate([a, a]))  # noqa: E731
    with torch.no_grad():
        v = model.denoiser(two(x), torch.tensor([500, 500]), torch.from_numpy(memory), two(style), two(level))
    x0_c, x0_u = 0.6 * x - 0.8 * v[:1].numpy(), 0.6 * x - 0.8 * v[1:].numpy()
    np.testing.assert_allclose(got, x0_u + 2.0 * (x0_c - x0_u), atol=1e-4)


def test_torch_programs_load_without_trainer_classes(exported):
    out, _ = exported
    program = torch.export.load(str(out / "decoder.pt2")).module()
    frames = program(torch.zeros(3, 4, 8))
    assert frames.shape == (3, 16, 83)


def test_export_of_a_run_without_model_is_a_clear_error(tmp_path, capsys):
    assert main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "no trained model here; run `reactdiff-trainer fit` first" in capsys.readouterr().err


def test_bad_fused_list_is_a_clear_error(exported, capsys):
    _, weights = exported
    assert main(["export", "--run", str(weights), "--out", "unused", "--fused", "euler:4"]) == 2
    assert "--fused 'euler:4': bad item" in capsys.readouterr().err
    assert parse_fused("ddim:4, 8", "dpmpp2m") == [("ddim", 4), ("dpmpp2m", 8)]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_says_so(exported, capsys):
    out, _ = exported
    assert main(["build-engine", "--model", str(out)]) != 0
    assert "cannot build TensorRT plans here: TensorRT is not installed" in capsys.readouterr().err
    assert load_model_dir(out).path == out  # nothing half-built was left behind to break loading
