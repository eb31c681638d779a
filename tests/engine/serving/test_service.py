"""One suite that every inference service passes: a batch's rows are what the backend gives each row alone, for
any batch size; a closed service refuses work; unknown kinds are refused with the choices. The Ray Serve service
runs a real local Ray (started here, a few seconds) with a real replica process."""

from __future__ import annotations

import numpy as np
import pytest

from engine.backends import create_backend, window_shapes
from engine.model_dir import load_model_dir
from engine.serving.service import (
    BackendSettings,
    InferenceService,
    ServiceKind,
    create_service,
    service_class,
)

SETTINGS = BackendSettings(backend="onnxruntime")


def batch(model, rows: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in window_shapes(model, rows).values()]
    arrays[2] = (rng.random((rows, 2)) > 0.3).astype(np.float32)  # present
    arrays[4] = (np.arange(model.window) < model.window // 2).astype(np.float32)[None].repeat(rows, 0)
    return arrays


KINDS = [pytest.param(k, id=k.value, marks=[pytest.mark.slow] if k is ServiceKind.RAY else []) for k in ServiceKind]


@pytest.fixture(scope="module", params=KINDS)
def service(request: pytest.FixtureRequest, tiny_model_dir) -> InferenceService:
    reason = service_class(request.param).unavailable_reason()
    if reason is not None:
        pytest.skip(f"{request.param.value}: {reason}")
    with create_service(request.param, tiny_model_dir, SETTINGS) as service:
        yield service


@pytest.mark.parametrize("rows", [1, 3, 16])
def test_each_row_of_a_batch_is_what_the_backend_gives_it_alone(service, rows):
    model = service.model
    arrays = batch(model, rows, seed=rows)
    got = service.run_batch(*arrays)
    assert got.shape == (rows, model.window, model.listener_dim) and got.dtype == np.float32
    with create_backend("onnxruntime", model) as backend:
        for i in (0, rows - 1):
            alone = backend.run_window(*(a[i : i + 1] for a in arrays))
            np.testing.assert_allclose(got[i], alone[0], atol=1e-5, rtol=0)
    assert service.backend_name == "onnxruntime"


def test_a_closed_service_refuses_work(tiny_model_dir):
    service = create_service(ServiceKind.IN_PROCESS, tiny_model_dir, SETTINGS)
    service.close()
    service.close()
    with pytest.raises(RuntimeError, match="in-process inference service is closed"):
        service.run_batch(*batch(load_model_dir(tiny_model_dir), 1))


def test_unknown_service_kinds_are_refused_with_the_choices(tiny_model_dir):
    with pytest.raises(ValueError, match=r"unknown inference service 'triton'; choose one of \['in-process', 'ray'\]"):
        create_service("triton", tiny_model_dir)
