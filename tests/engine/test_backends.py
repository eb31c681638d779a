"""One suite that every inference backend available here passes: parity with the trainer's torch-eager reference,
input checks, every K and sampler, determinism. Unavailable backends (TensorRT, CUDA here) skip with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.backends import (
    BackendKind,
    BackendUnavailable,
    available_backends,
    create_backend,
    window_shapes,
)
from engine.model_dir import ModelDir, load_model_dir
from engine.windows import generate_windows
from tests.conftest import TINY, version_1_model
from trainer.config import RunConfig
from trainer.export import export_model, save_untrained_model
from trainer.generate import generate, torch_window_fn
from trainer.model import ReactDiff
from trainer.train import load_model

pytestmark = pytest.mark.slow  # the module fixture exports a model (ONNX + torch programs): ~10 s once

FUSED = [("dpmpp2m", 4), ("ddim", 2)]
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelDir, ReactDiff]:
    root = tmp_path_factory.mktemp("backends")
    weights = save_untrained_model(RunConfig(model=TINY), root / "run" / "model.pt", seed=3)
    return export_model(weights, root / "model", fused=FUSED, progress=False), load_model(weights)


def window_arrays(model: ModelDir, batch: int = 1, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in window_shapes(model, batch).values()]
    arrays[2] = (rng.random((batch, 2)) > 0.3).astype(np.float32)  # present
    arrays[4] = (np.arange(model.window) < model.window // 2).astype(np.float32)[None].repeat(batch, 0)
    return arrays


@pytest.fixture(params=list(BackendKind), ids=lambda k: k.value)
def kind(request: pytest.FixtureRequest) -> BackendKind:
    reason = available_backends()[request.param]
    if reason is not None:
        pytest.skip(f"{request.param.value}: {reason}")
    if request.param in (BackendKind.TORCH_CUDA, BackendKind.TENSORRT):
        request.applymarker(pytest.mark.gpu)
    return request.param


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m"])
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_same_frames_as_torch_eager(exported, kind, steps, sampler):
    model, torch_model = exported
    arrays = window_arrays(model, batch=2)
    want = torch_window_fn(torch_model, steps=steps, sampler=sampler, guidance=1.7)(*arrays)
    with create_backend(kind, model, steps=steps, sampler=sampler, guidance=1.7) as backend:
        got = backend.run_window(*arrays)
    assert got.shape == (2, model.window, model.listener_dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


def test_deterministic_and_rows_independent(exported, kind):
    model, _ = exported
    arrays = window_arrays(model, batch=3, seed=5)
    with create_backend(kind, model) as backend:
        first, second = backend.run_window(*arrays), backend.run_window(*arrays)
        alone = backend.run_window(*(a[1:2] for a in arrays))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(alone[0], first[1], atol=1e-5)


def test_bad_inputs_are_clear_errors(exported, kind):
    model, _ = exported
    arrays = window_arrays(model)
    with create_backend(kind, model) as backend:
        short = [*arrays[:1], arrays[1][:, :-1], *arrays[2:]]
        with pytest.raises(ValueError, match=r"face has shape \(1, 15, 58\), expected \(1, 16, 58\)"):
            backend.run_window(*short)
        noisy = [a.copy() for a in arrays]
        noisy[5][0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="noise contains NaN"):
            backend.run_window(*noisy)
        with pytest.raises(ValueError, match="present has shape"):
            backend.run_window(*arrays[:2], arrays[2][:, :1], *arrays[3:])
    with pytest.raises(RuntimeError, match="closed"):
        backend.run_window(*arrays)


def test_whole_clip_matches_trainer_generate(exported, kind):
    model, torch_model = exported
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((1, 30, 57)).astype(np.float32)
    face = rng.standard_normal((1, 30, 58)).astype(np.float32)
    want = generate(torch_model, audio, face, steps=2, sampler="ddim", hop=4, seed=9)
    with create_backend(kind, model, steps=2, sampler="ddim") as backend:
        got = generate_windows(
            backend.run_window, audio, face, np.ones((1, 2), np.float32), window=model.window, hop=4,
            latent_shape=model.latent_shape, listener_dim=model.listener_dim, seed=9,
            neutral_listener=model.neutral_listener,
        )  # fmt: skip
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


def test_onnxruntime_fused_graph_equals_step_graphs(exported):
    model, _ = exported
    arrays = window_arrays(model, batch=2)
    fused = create_backend(BackendKind.ONNXRUNTIME, model, steps=4, sampler="dpmpp2m")
    steps = create_backend(BackendKind.ONNXRUNTIME, model, steps=4, sampler="dpmpp2m", fused=False)
    assert fused.fused and not steps.fused
    np.testing.assert_allclose(fused.run_window(*arrays), steps.run_window(*arrays), atol=1e-5)
    with pytest.raises(ValueError, match="no fused graph for ddim K=8"):
        create_backend(BackendKind.ONNXRUNTIME, model, steps=8, sampler="ddim", fused=True)


def test_auto_picks_the_first_available_backend(exported):
    model, _ = exported
    first = next(k for k, reason in available_backends().items() if reason is None and k is not BackendKind.TENSORRT)
    with create_backend("auto", model) as backend:
        assert backend.kind in (first, BackendKind.TENSORRT)
        assert backend.steps == 4 and backend.sampler_name == "dpmpp2m"  # the manifest's defaults


def test_unknown_backend_and_bad_settings(exported):
    model, _ = exported
    with pytest.raises(ValueError, match="unknown backend 'onnx'; choose one of"):
        create_backend("onnx", model)
    with pytest.raises(ValueError, match="unknown sampler"):
        create_backend(BackendKind.ONNXRUNTIME, model, sampler="euler")
    with pytest.raises(ValueError, match="steps=0"):
        create_backend(BackendKind.ONNXRUNTIME, model, steps=0)


@pytest.mark.skipif(available_backends()[BackendKind.TENSORRT] is None, reason="TensorRT is installed here")
def test_tensorrt_missing_says_why(exported):
    model, _ = exported
    with pytest.raises(BackendUnavailable, match="tensorrt backend unavailable"):
        create_backend(BackendKind.TENSORRT, model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_graph_replay_equals_plain_cuda(exported):
    model, _ = exported
    arrays = window_arrays(model, batch=2)
    with create_backend(BackendKind.TORCH_CUDA, model, cuda_graphs=True) as graphed:
        first = graphed.run_window(*arrays)
        arrays2 = window_arrays(model, batch=2, seed=8)
        replayed = graphed.run_window(*arrays2)  # the same captured graph, new inputs
    with create_backend(BackendKind.TORCH_CUDA, model, cuda_graphs=False) as plain:
        np.testing.assert_allclose(first, plain.run_window(*arrays), atol=1e-5)
        np.testing.assert_allclose(replayed, plain.run_window(*arrays2), atol=1e-5)


def test_model_path_string_is_accepted(exported):
    model, _ = exported
    with create_backend(BackendKind.ONNXRUNTIME, str(model.path)) as backend:
        assert backend.device == "cpu" and Path(backend.model.path) == model.path


def test_a_graph_onnx_runtime_cannot_load_is_a_model_dir_error_naming_it(tiny_model_dir, tmp_path):
    """Without the sha256 check (verify_hashes=False), a damaged graph reached ONNX Runtime, whose own exception
    types (InvalidProtobuf, Fail, ...) came out as tracebacks."""
    import shutil

    from engine.model_dir import ModelDirError

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    graph = next(model.glob("window_*.onnx"))
    data = bytearray(graph.read_bytes())
    data[:64] = b"\xff" * 64  # the protobuf's first fields, same size: only the sha256 could tell
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelDirError, match=rf"{graph.name}: ONNX Runtime cannot load this graph .*re-export"):
        create_backend("onnxruntime", load_model_dir(model, verify_hashes=False))


def test_no_style_given_is_no_one_in_particular_and_a_style_changes_the_listener(exported, kind):
    model, _ = exported
    arrays = window_arrays(model, batch=2, seed=7)[:6]  # without style and expressiveness
    assert model.style is not None
    null = np.tile(np.asarray(model.style.null, np.float32), (2, 1))
    with create_backend(kind, model) as backend:
        default = backend.run_window(*arrays)
        explicit = backend.run_window(*arrays, style=null, expressiveness=np.zeros((2, 2), np.float32))
        styled = backend.run_window(*arrays, style=null + 0.5, expressiveness=np.array([[0.7, 1.0]] * 2, np.float32))
        with pytest.raises(ValueError, match=r"style has shape \(2, 3\), expected \(2, 32\)"):
            backend.run_window(*arrays, style=null[:, :3])
    np.testing.assert_array_equal(default, explicit)
    assert np.abs(styled - default).max() > 1e-3


def test_a_model_without_a_style_input_refuses_a_persona(exported, tmp_path):
    model = load_model_dir(version_1_model(exported[0].path, tmp_path / "v1"))
    assert model.style is None
    with create_backend("onnxruntime", model) as backend:
        arrays = window_arrays(backend.model)
        assert backend.run_window(*arrays).shape == (1, backend.model.window, 83)
        with pytest.raises(ValueError, match="has no listener style input"):
            backend.run_window(*arrays, style=np.zeros((1, 32), np.float32))
