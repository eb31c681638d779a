"""ONNX Runtime backend: the step graphs (or a fused window graph) on the CPU or the CUDA execution provider.

Sessions use graph optimisation level ALL, sequential execution and `threads` intra-op threads (default 1, so
several engine workers share a CPU fairly). When the model directory holds a fused window graph for the chosen
sampler and K, one session call runs the whole window (no per-step Python); otherwise the sampler loop runs
here and calls the guided denoiser step graph K times.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.backends.base import Backend, BackendKind
from engine.model_dir import REEXPORT, ModelDirError

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"


def _providers(device: str | None) -> tuple[list[str], str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    want_cuda = device is None or device.startswith("cuda")
    if want_cuda and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, "CPUExecutionProvider"], "cuda"
    if device is not None and device.startswith("cuda"):
        raise ValueError(f"device={device!r}: this onnxruntime has no {CUDA_PROVIDER}; install onnxruntime-gpu")
    return ["CPUExecutionProvider"], "cpu"


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime sessions over the model directory's ONNX graphs."""

    kind = BackendKind.ONNXRUNTIME

    def __init__(self, *args: Any, fused: bool | None = None, **kwargs: Any) -> None:
        """`fused`: None uses a fused window graph when one matches sampler and K; False always uses step graphs."""
        device = kwargs.get("device")
        super().__init__(*args, **kwargs)
        import onnxruntime as ort

        self._providers, self._device = _providers(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self._options = options
        graph = self.model.fused_graph(self.sampler_name, self.steps) if fused is not False else None
        if fused and graph is None:
            raise ValueError(
                f"{self.model.path} has no fused graph for {self.sampler_name} K={self.steps}; re-export with "
                f"`--fused {self.sampler_name}:{self.steps}` or use the step graphs (fused=None)"
            )
        self.fused = graph is not None
        names = [graph.name] if graph is not None else ["condition", "denoiser", "decoder"]
        self._sessions = {n: self._session(n) for n in names}
        self._guidance = np.array([self.guidance], dtype=np.float32)

    def _session(self, graph: str) -> Any:
        import onnxruntime as ort

        path = self.model.path_of(self.model.graphs[graph].onnx)
        try:
            return ort.InferenceSession(str(path), sess_options=self._options, providers=self._providers)
        except Exception as exc:  # ONNX Runtime's own types (InvalidProtobuf, Fail, ...): the file, not our code
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelDirError(f"{path}: ONNX Runtime cannot load this graph ({reason}); {REEXPORT}") from exc

    @classmethod
    def unavailable_reason(cls, device: str | None = None) -> str | None:
        try:
            _providers(device)
        except ImportError:
            return "onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)"
        except ValueError as exc:
            return str(exc)
        return None

    @property
    def device(self) -> str:
        return self._device

    def _run(self, *arrays: NDArray[np.float32]) -> NDArray[np.float32]:
        audio, face, present, known, known_mask, noise, *listener = arrays
        feeds = {"audio": audio, "face": face, "present": present, "known": known, "known_mask": known_mask}
        who = dict(zip(("style", "expressiveness"), listener, strict=False))  # none for a model without style
        if self.fused:
            (session,) = self._sessions.values()
            return session.run(None, {**feeds, "noise": noise, "guidance": self._guidance, **who})[0]
        memory = self._sessions["condition"].run(None, feeds)[0]
        denoiser, b = self._sessions["denoiser"], noise.shape[0]

        def predict_x0(x: NDArray[np.float32], t: int) -> NDArray[np.float32]:
            alpha, sigma = self.schedule.alpha_sigma(t)
            coef = np.array([alpha, sigma, self.guidance], dtype=np.float32)
            t_batch = np.full((b,), t, dtype=np.float32)
            feed = {"x": np.ascontiguousarray(x, dtype=np.float32), "t": t_batch, "memory": memory, "coef": coef}
            return denoiser.run(None, feed | who)[0]

        latents = self.sampler(predict_x0, noise, self.schedule, self.steps)
        return self._sessions["decoder"].run(None, {"latents": np.asarray(latents, dtype=np.float32)})[0]

    def close(self) -> None:
        self._sessions = {}
        super().close()
