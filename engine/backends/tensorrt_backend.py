"""TensorRT backend: plans built by `reactdiff-trainer build-engine`, executed with `execute_async_v3`.

Plans live in `<model dir>/tensorrt/<graph>-<key>.plan`. The key hashes everything a plan depends on (GPU name,
compute capability, TensorRT version, the ONNX file's sha256, precision, batch profile and shapes), so a plan built
for another GPU, TensorRT or model is never reused: it is simply not found, and the message says to rebuild.
Buffers are torch CUDA tensors; the whole window (3 plans, K steps) is captured into a CUDA graph per batch size,
exactly as the torch-cuda backend does with its programs. `tensorrt` is imported only here, lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from engine.backends.base import BackendKind, BackendUnavailable
from engine.backends.torch_backend import GRAPHS, TorchCudaBackend
from engine.model_dir import ModelDir

log = logging.getLogger(__name__)

PLAN_FOLDER = "tensorrt"
TIMING_CACHE = "timing.cache"
MISSING_TENSORRT = "TensorRT is not installed (pip install tensorrt; it needs an NVIDIA GPU and driver)"


def import_tensorrt() -> Any:
    """The `tensorrt` module, or BackendUnavailable saying how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailable(MISSING_TENSORRT) from None
    return tensorrt


def gpu_identity(device: str = "cuda") -> dict[str, Any]:
    """Name and compute capability of `device`, or BackendUnavailable when torch sees no CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA GPU visible (torch.cuda.is_available() is False): TensorRT needs one")
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def plan_key(model: ModelDir, graph: str, *, trt_version: str, gpu: dict[str, Any], fp16: bool, max_batch: int) -> str:
    """16 hex digits naming one plan: everything that makes a plan valid or stale goes into it."""
    spec = model.graphs[graph]
    identity = {
        **gpu,
        "tensorrt": trt_version,
        "onnx_sha256": model.manifest["files"][spec.onnx]["sha256"],
        "fp16": fp16,
        "batch_profile": [1, 1, max_batch],
        "inputs": [s.to_json() for s in spec.inputs],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def plan_path(model: ModelDir, graph: str, key: str) -> Path:
    return model.path / PLAN_FOLDER / f"{graph}-{key}.plan"


def find_plans(
    model: ModelDir, *, trt_version: str, gpu: dict[str, Any], fp16: bool | None
) -> tuple[dict[str, Path], bool]:
    """Plans for the three step graphs on this GPU (fp32 preferred when `fp16` is None) and whether they are fp16."""
    index_path = model.path / PLAN_FOLDER / "plans.json"
    built = json.loads(index_path.read_text()) if index_path.is_file() else []
    for candidate in [False, True] if fp16 is None else [fp16]:
        for entry in built:
            if entry["fp16"] != candidate:
                continue
            keys = {g: plan_key(model, g, trt_version=trt_version, gpu=gpu, fp16=candidate,
                                max_batch=entry["max_batch"]) for g in GRAPHS}  # fmt: skip
            paths = {g: plan_path(model, g, k) for g, k in keys.items()}
            if all(p.is_file() for p in paths.values()):
                return paths, candidate
    raise BackendUnavailable(
        f"{model.path}: no TensorRT plans for {gpu['gpu']} (sm {gpu['compute_capability']}), TensorRT {trt_version}; "
        f"build them with `reactdiff-trainer build-engine --model {model.path}`"
    )


class _Plan:
    """One deserialised plan with its execution context; called like the torch program it replaces."""

    def __init__(self, trt: Any, runtime: Any, path: Path, spec: Any, device: str) -> None:
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendUnavailable(f"{path}: TensorRT could not deserialise this plan; rebuild with build-engine")
        self.context = self.engine.create_execution_context()
        self.spec, self.device = spec, device

    def __call__(self, *inputs: Any) -> Any:
        import torch

        batch = inputs[0].shape[0]
        inputs = tuple(t.contiguous() for t in inputs)  # held until the enqueue below has been issued
        for s, tensor in zip(self.spec.inputs, inputs, strict=True):
            self.context.set_input_shape(s.name, tuple(tensor.shape))
            self.context.set_tensor_address(s.name, tensor.data_ptr())
        (out_spec,) = self.spec.outputs
        out = torch.empty(out_spec.concrete(batch), dtype=torch.float32, device=self.device)
        self.context.set_tensor_address(out_spec.name, out.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError(f"TensorRT failed to run graph {self.spec.name!r}")
        return out


class TensorRTBackend(TorchCudaBackend):
    """TensorRT plans in place of the torch programs; same sampler loop and CUDA-graph capture as torch-cuda."""

    kind = BackendKind.TENSORRT

    def __init__(self, *args: Any, fp16: bool | None = None, **kwargs: Any) -> None:
        self._fp16_request = fp16
        super().__init__(*args, **kwargs)

    @classmethod
    def unavailable_reason(cls, device: str | None = None) -> str | None:
        try:
            import_tensorrt()
        except BackendUnavailable as exc:
            return str(exc)
        return TorchCudaBackend.unavailable_reason(device)

    def _load_programs(self) -> dict[str, Any]:
        trt = import_tensorrt()
        gpu = gpu_identity(self._device)
        paths, self.fp16 = find_plans(self.model, trt_version=trt.__version__, gpu=gpu, fp16=self._fp16_request)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._runtime = runtime
        return {g: _Plan(trt, runtime, p, self.model.graphs[g], self._device) for g, p in paths.items()}
