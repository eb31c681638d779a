"""Inference backends behind one interface, keyed by `BackendKind`.

    from engine.backends import create_backend
    backend = create_backend("auto", "models/base", steps=4, sampler="dpmpp2m", guidance=1.5)
    frames = backend.run_window(audio, face, present, known, known_mask, noise)   # a WindowFn

`auto` tries TensorRT, torch CUDA, ONNX Runtime, then torch CPU, and takes the first that can run here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.backends.base import Backend, BackendKind, BackendUnavailable, check_window_inputs, window_shapes
from engine.model_dir import ModelDir, load_model_dir

log = logging.getLogger(__name__)

AUTO = "auto"


def backend_class(kind: BackendKind) -> type[Backend]:
    """The implementation of `kind` (imported on demand: none of the runtimes is imported up front)."""
    if kind is BackendKind.ONNXRUNTIME:
        from engine.backends.ort_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend
    if kind is BackendKind.TORCH_CPU:
        from engine.backends.torch_backend import TorchCpuBackend

        return TorchCpuBackend
    if kind is BackendKind.TORCH_CUDA:
        from engine.backends.torch_backend import TorchCudaBackend

        return TorchCudaBackend
    from engine.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend


def parse_kind(kind: BackendKind | str) -> BackendKind | str:
    if kind == AUTO or isinstance(kind, BackendKind):
        return kind
    try:
        return BackendKind(kind)
    except ValueError:
        choices = [AUTO, *(k.value for k in BackendKind)]
        raise ValueError(f"unknown backend {kind!r}; choose one of {choices}") from None


def available_backends(device: str | None = None) -> dict[BackendKind, str | None]:
    """Every backend kind -> None if it can run here, else the reason it cannot."""
    return {k: backend_class(k).unavailable_reason(device) for k in BackendKind}


def create_backend(
    kind: BackendKind | str, model_dir: str | Path | ModelDir, *, steps: int | None = None,
    sampler: str | None = None, guidance: float | None = None, threads: int = 1, device: str | None = None,
    **options: Any,
) -> Backend:  # fmt: skip
    """A ready backend for `model_dir`; sampling settings default to the manifest's. `options` go to the class
    (e.g. fused=False for onnxruntime, cuda_graphs=False for torch-cuda, fp16=True for tensorrt)."""
    parsed = parse_kind(kind)
    model = model_dir if isinstance(model_dir, ModelDir) else load_model_dir(model_dir)
    settings: dict[str, Any] = dict(steps=steps, sampler=sampler, guidance=guidance, threads=threads, device=device)
    if parsed != AUTO:
        cls = backend_class(BackendKind(parsed))
        reason = cls.unavailable_reason(device)
        if reason:
            raise BackendUnavailable(f"{parsed} backend unavailable: {reason}")
        return cls(model, **settings, **options)
    reasons = []
    for candidate in BackendKind:
        cls = backend_class(candidate)
        reason = cls.unavailable_reason(device)
        if reason is None:
            try:
                return cls(model, **settings, **options)
            except BackendUnavailable as exc:
                reason = str(exc)
        log.info("auto backend: skipping %s (%s)", candidate.value, reason)
        reasons.append(f"{candidate.value}: {reason}")
    raise BackendUnavailable("no backend can run here: " + "; ".join(reasons))


__all__ = [
    "AUTO", "Backend", "BackendKind", "BackendUnavailable", "available_backends", "backend_class",
    "check_window_inputs", "create_backend", "parse_kind", "window_shapes",
]  # fmt: skip
