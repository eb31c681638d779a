"""torch backends: the model directory's `torch.export` programs (`.pt2`) on the CPU, or on CUDA with CUDA graphs.

No trainer classes are needed: `torch.export.load` restores each graph as a program, `.module()` makes it callable.
On CUDA the whole window (condition pair, K sampler steps, decoder) is captured once per speaker batch size into a
`torch.cuda.CUDAGraph` over static input/output buffers, and each window is one copy-in, one replay, one copy-out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.backends.base import Backend, BackendKind, window_shapes

log = logging.getLogger(__name__)

GRAPHS = ("condition", "denoiser", "decoder")


def load_programs(model: Any, device: str) -> dict[str, Callable[..., Any]]:
    """graph name -> callable torch module on `device`, from the model directory's `.pt2` files."""
    import torch
    from torch.export.passes import move_to_device_pass

    programs: dict[str, Callable[..., Any]] = {}
    for name in GRAPHS:
        file = model.graphs[name].torch
        if file is None:
            raise ValueError(f"{model.path}: graph {name!r} has no torch program; re-export the model directory")
        program = torch.export.load(str(model.path_of(file)))
        if device != "cpu":
            program = move_to_device_pass(program, device)
        programs[name] = program.module()
    return programs


class _TorchBackend(Backend):
    """Shared by the CPU and CUDA variants: the window computed with torch tensors on `self._device`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        device = kwargs.get("device")
        super().__init__(*args, **kwargs)
        import torch

        self._device = self._pick_device(device)
        if self._device == "cpu":
            torch.set_num_threads(self.threads)
        self._programs = self._load_programs()
        # [alpha, sigma, guidance] per sampling timestep, made once: a host->device copy cannot be graph-captured
        self._coef = {
            t: torch.tensor([*self.schedule.alpha_sigma(t), self.guidance], dtype=torch.float32, device=self._device)
            for t in self.schedule.sampling_timesteps(self.steps)
        }

    def _pick_device(self, device: str | None) -> str:
        return device or "cpu"

    def _load_programs(self) -> dict[str, Callable[..., Any]]:
        return load_programs(self.model, self._device)

    @property
    def device(self) -> str:
        return self._device

    def _window(
        self, audio: Any, face: Any, present: Any, known: Any, known_mask: Any, noise: Any, *listener: Any
    ) -> Any:
        """The window on torch tensors (no numpy, no host syncs: capturable in a CUDA graph); `listener` is
        (style, expressiveness) for a model with a style input."""
        import torch

        p = self._programs
        memory = p["condition"](audio, face, present, known, known_mask)
        b = noise.shape[0]

        def predict_x0(x: Any, t: int) -> Any:
            return p["denoiser"](x, torch.full((b,), float(t), device=x.device), memory, self._coef[t], *listener)

        return p["decoder"](self.sampler(predict_x0, noise, self.schedule, self.steps))

    def close(self) -> None:
        self._programs = {}
        super().close()


class TorchCpuBackend(_TorchBackend):
    """The torch programs on the CPU, `threads` intra-op threads (torch.set_num_threads is process-wide)."""

    kind = BackendKind.TORCH_CPU

    @classmethod
    def unavailable_reason(cls, device: str | None = None) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed: pip install torch"
        return None

    def _run(self, *arrays: NDArray[np.float32]) -> NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            return self._window(*(torch.from_numpy(a) for a in arrays)).numpy()


class TorchCudaBackend(_TorchBackend):
    """The torch programs on a CUDA GPU; the whole window replayed from a CUDA graph per batch size."""

    kind = BackendKind.TORCH_CUDA

    def __init__(self, *args: Any, cuda_graphs: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cuda_graphs = cuda_graphs
        self._captured: dict[int, tuple[Any, list[Any], Any]] = {}  # batch -> (graph, static inputs, static output)

    def _pick_device(self, device: str | None) -> str:
        reason = self.unavailable_reason(device)
        if reason:
            raise ValueError(reason)
        return device or "cuda"

    @classmethod
    def unavailable_reason(cls, device: str | None = None) -> str | None:
        try:
            import torch
        except ImportError:
            return "torch is not installed: pip install torch (a CUDA build)"
        if device is not None and not device.startswith("cuda"):
            return f"device={device!r}: the torch-cuda backend runs on cuda devices; use torch-cpu for the CPU"
        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch (torch.cuda.is_available() is False); install a CUDA build of torch"
        return None

    def _capture(self, batch: int) -> tuple[Any, list[Any], Any]:
        import torch

        shapes = window_shapes(self.model, batch)
        static = [torch.zeros(s, device=self._device) for s in shapes.values()]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph: lazy kernels and allocator pools
                self._window(*static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            output = self._window(*static)
        log.debug("captured a CUDA graph of the whole window at batch %d", batch)
        return graph, static, output

    def _run(self, *arrays: NDArray[np.float32]) -> NDArray[np.float32]:
        import torch

        batch = arrays[0].shape[0]
        if not self.cuda_graphs:
            with torch.inference_mode():
                tensors = [torch.from_numpy(a).to(self._device) for a in arrays]
                return self._window(*tensors).cpu().numpy()
        if batch not in self._captured:
            self._captured[batch] = self._capture(batch)
        graph, static, output = self._captured[batch]
        with torch.inference_mode():
            for buffer, a in zip(static, arrays, strict=True):
                buffer.copy_(torch.from_numpy(a), non_blocking=False)
            graph.replay()
            return output.cpu().numpy()

    def close(self) -> None:
        self._captured = {}
        super().close()
