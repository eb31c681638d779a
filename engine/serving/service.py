"""Where batched windows run: one small interface, a registry keyed by `ServiceKind`.

    service = create_service(ServiceKind.IN_PROCESS, "models/base", BackendSettings(steps=4))
    frames = service.run_batch(audio, face, present, known, known_mask, noise)    # (B, W, 83)
    service.close()

`IN_PROCESS` (the default) runs an engine.backends Backend in this process. `RAY` (engine.serving.ray_service)
runs the same Backend in a Ray Serve deployment, on this machine or across a Ray cluster. Either way a batch is
the rows of several sessions' windows stacked on the batch axis of the exported graphs, and row i of the answer
is what the backend gives row i alone (tests/engine/serving/test_service.py holds every kind to it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from engine.backends import AUTO, Backend, BackendKind, create_backend
from engine.model_dir import ModelDir, load_model_dir


class ServiceKind(StrEnum):
    """Registered inference services."""

    IN_PROCESS = "in-process"
    RAY = "ray"


class ServiceUnavailable(RuntimeError):
    """This service cannot run here (a missing package, an unreachable cluster); the message says what to do."""


@dataclass(frozen=True)
class BackendSettings:
    """The backend every batch runs on, wherever the service puts it (engine.backends.create_backend)."""

    backend: BackendKind | str = AUTO
    """Inference backend: auto, onnxruntime, torch-cpu, torch-cuda or tensorrt."""
    steps: int | None = None
    """Sampler steps K per window (None: the model's)."""
    sampler: str | None = None
    """ddim or dpmpp2m (None: the model's)."""
    threads: int = 1
    """Intra-op threads of the backend."""
    device: str | None = None
    """"cpu", "cuda:0", ... (None: the backend's choice)."""

    def open(self, model: ModelDir | str | Path) -> Backend:
        """A ready backend for `model` with these settings."""
        return create_backend(
            self.backend, model, steps=self.steps, sampler=self.sampler, threads=self.threads, device=self.device
        )


class InferenceService(ABC):
    """Runs batches of windows for the shared scheduler (engine.serving.scheduler). `close()` is safe twice."""

    kind: ClassVar[ServiceKind]

    def __init__(self, model: ModelDir | str | Path, settings: BackendSettings) -> None:
        self.model = model if isinstance(model, ModelDir) else load_model_dir(model)
        self.settings = settings
        self.closed = False

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when this service can run here, else why not and how to fix it."""

    @property
    @abstractmethod
    def backend_name(self) -> str:
        """The backend the batches run on ("onnxruntime", ...)."""

    def run_batch(self, *arrays: NDArray[np.float32]) -> NDArray[np.float32]:
        """Listener frames (B, W, 83) of B windows. `arrays`: engine.windows.WindowFn's arguments with batch B, by
        position: audio, face, present, known, known_mask, noise, and for a model with a style input style and
        expressiveness (engine.backends.window_shapes gives them all)."""
        if self.closed:
            raise RuntimeError(f"the {self.kind.value} inference service is closed")
        return self._run(*arrays)

    @abstractmethod
    def _run(self, *arrays: NDArray[np.float32]) -> NDArray[np.float32]:
        """One batch, arrays as run_batch takes them."""

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> InferenceService:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class InProcessService(InferenceService):
    """The backend in this process: the scheduler's thread calls it directly."""

    kind = ServiceKind.IN_PROCESS

    def __init__(self, model: ModelDir | str | Path, settings: BackendSettings) -> None:
        super().__init__(model, settings)
        self.backend = settings.open(self.model)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def _run(self, *arrays: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.backend.run_window(*arrays)

    def close(self) -> None:
        self.backend.close()
        super().close()


def service_class(kind: ServiceKind) -> type[InferenceService]:
    """The implementation of `kind` (Ray is imported only when asked for)."""
    if kind is ServiceKind.IN_PROCESS:
        return InProcessService
    from engine.serving.ray_service import RayServeService

    return RayServeService


def create_service(
    kind: ServiceKind | str, model: ModelDir | str | Path, settings: BackendSettings | None = None, **options: object
) -> InferenceService:
    """A ready service of `kind`; `options` go to its class (e.g. address= and replicas= for ray)."""
    try:
        parsed = ServiceKind(kind)
    except ValueError:
        choices = [k.value for k in ServiceKind]
        raise ValueError(f"unknown inference service {kind!r}; choose one of {choices}") from None
    cls = service_class(parsed)
    reason = cls.unavailable_reason()
    if reason is not None:
        raise ServiceUnavailable(f"{parsed.value} inference service unavailable: {reason}")
    return cls(model, settings or BackendSettings(), **options)
