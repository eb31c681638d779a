"""The inference backend contract: one window of speaker features in, one window of listener frames out.

Every backend runs the same computation as the trainer's torch-eager reference (trainer.generate.torch_window_fn):
the condition graph on the classifier-free-guidance pair, K steps of `sampler` with the guided denoiser step,
then the decoder. Backends differ only in what runs the graphs (ONNX Runtime, torch programs, TensorRT plans).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from engine.diffusion import CosineSchedule, Sampler, get_sampler
from engine.model_dir import ModelDir, load_model_dir


class BackendKind(StrEnum):
    """Registered backends, in the order `auto` tries them."""

    TENSORRT = "tensorrt"
    TORCH_CUDA = "torch-cuda"
    ONNXRUNTIME = "onnxruntime"
    TORCH_CPU = "torch-cpu"


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (missing package, no GPU, no built plan); the message says what to install/do."""


class Backend(ABC):
    """Runs windows of a model directory; a WindowFn (engine.windows) through `run_window`.

    Construct with keyword-only sampling settings; `close()` frees sessions/GPU memory and is safe to call twice.
    Usable as a context manager.
    """

    kind: ClassVar[BackendKind]

    def __init__(
        self, model: ModelDir | str | Path, *, steps: int | None = None, sampler: str | None = None,
        guidance: float | None = None, threads: int = 1, device: str | None = None,
    ) -> None:  # fmt: skip
        self.model = model if isinstance(model, ModelDir) else load_model_dir(model)
        defaults = self.model.manifest["sampling"]
        self.steps = int(steps if steps is not None else defaults["steps"])
        self.sampler_name = str(sampler or defaults["sampler"])
        self.guidance = float(guidance if guidance is not None else defaults["guidance"])
        if threads < 1:
            raise ValueError(f"threads={threads}: use at least 1 intra-op thread")
        self.threads = threads
        self.sampler: Sampler = get_sampler(self.sampler_name)
        self.schedule: CosineSchedule = self.model.schedule
        self.schedule.sampling_timesteps(self.steps)  # checks 1 <= steps <= 50 with a clear message
        self.closed = False

    @classmethod
    @abstractmethod
    def unavailable_reason(cls, device: str | None = None) -> str | None:
        """None when this backend can run here, else why not and how to fix it."""

    @property
    def name(self) -> str:
        return self.kind.value

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the graphs run: "cpu", "cuda:0", ..."""

    def run_window(
        self, audio: NDArray[np.float32], face: NDArray[np.float32], present: NDArray[np.float32],
        known: NDArray[np.float32], known_mask: NDArray[np.float32], noise: NDArray[np.float32],
        style: NDArray[np.float32] | None = None, expressiveness: NDArray[np.float32] | None = None,
    ) -> NDArray[np.float32]:  # fmt: skip
        """Listener frames (B,W,83) for one window; the argument shapes are those of engine.windows.WindowFn.

        `style` (B,D) and `expressiveness` (B,2) say who listens (see engine.model_dir); None: no one in
        particular, moving as such (the null style, [0, 0]). A model without a style input refuses them."""
        if self.closed:
            raise RuntimeError(f"{self.name} backend is closed; create a new one")
        who = listener_inputs(self.model, np.shape(audio)[0] if np.ndim(audio) == 3 else 1, style, expressiveness)
        arrays = check_window_inputs(
            self.model, audio=audio, face=face, present=present, known=known, known_mask=known_mask, noise=noise,
            **who,
        )  # fmt: skip
        return self._run(*arrays)

    @abstractmethod
    def _run(self, *arrays: NDArray[np.float32]) -> NDArray[np.float32]:
        """The window on checked, contiguous float32 arrays (audio, face, present, known, known_mask, noise, and
        for a model with a style input, style and expressiveness)."""

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def window_shapes(model: ModelDir, batch: int) -> dict[str, tuple[int, ...]]:
    """The shape each run_window argument must have for a speaker batch of `batch`."""
    shapes = {s.name: s.concrete(batch) for s in model.graphs["condition"].inputs}
    shapes["noise"] = (batch, *model.latent_shape)
    if model.style is not None:
        shapes |= {"style": (batch, int(model.manifest["d_model"])), "expressiveness": (batch, 2)}
    return shapes


def listener_inputs(
    model: ModelDir, batch: int, style: NDArray[np.float32] | None, expressiveness: NDArray[np.float32] | None
) -> dict[str, NDArray[np.float32]]:
    """The style and expressiveness arguments of a window: as given, or the null style and [0, 0] for a model that
    takes them; none for a model without a style input (which refuses any given)."""
    styles = model.style
    if styles is None:
        if style is not None or expressiveness is not None:
            raise ValueError(
                f"{model.path} has no listener style input (a model directory of format version 1): it cannot take "
                "a persona or an expressiveness; export a model trained with personas"
            )
        return {}
    null = np.tile(np.asarray(styles.null, np.float32), (batch, 1))
    return {
        "style": null if style is None else style,
        "expressiveness": np.zeros((batch, 2), np.float32) if expressiveness is None else expressiveness,
    }


def check_window_inputs(model: ModelDir, **arrays: NDArray[np.float32]) -> list[NDArray[np.float32]]:
    """Check shapes (same batch everywhere) and finiteness; return contiguous float32 arrays in WindowFn order."""
    audio = np.asarray(arrays["audio"])
    if audio.ndim != 3:
        raise ValueError(f"audio must be (batch, {model.window}, 57), got shape {audio.shape}")
    expected = window_shapes(model, audio.shape[0])
    out = []
    for name, shape in expected.items():
        a = np.ascontiguousarray(arrays[name], dtype=np.float32)
        if a.shape != shape:
            raise ValueError(
                f"{name} has shape {a.shape}, expected {shape} (batch {audio.shape[0]}, window {model.window})"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinity; check the features feeding the window")
        out.append(a)
    return out
