"""Diffusion schedule and few-step samplers, shared by training-time evaluation and every inference backend.

The samplers only combine arrays linearly with Python floats, so they run unchanged on numpy arrays
(ONNX Runtime, TensorRT backends) and torch tensors (torch backend, trainer). A denoiser is wrapped as a
`DataPredictor`: (x_t, timestep index) -> predicted clean sample x0 (guidance already applied).

Every sampler has the signature `sampler(predict_x0, noise, schedule, steps) -> x0`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor
DataPredictor = Callable[[Array, int], Array]


@dataclass(frozen=True)
class CosineSchedule:
    """Cosine noise schedule (Nichol & Dhariwal 2021): alpha_bar(t) = cos²(((t/T)+s)/(1+s)·π/2), normalised.

    x_t = alpha(t)·x0 + sigma(t)·eps with alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar).
    """

    timesteps: int = 1000
    offset: float = 0.008
    min_alpha_bar: float = 1e-4

    def alpha_bar(self, t: int) -> float:
        f = lambda u: math.cos((u / self.timesteps + self.offset) / (1 + self.offset) * math.pi / 2) ** 2  # noqa: E731
        return max(f(t + 1) / f(0), self.min_alpha_bar)

    def alpha_sigma(self, t: int) -> tuple[float, float]:
        ab = self.alpha_bar(t)
        return math.sqrt(ab), math.sqrt(1.0 - ab)

    def alpha_sigma_table(self) -> np.ndarray:
        """(timesteps, 2) float32 table of (alpha, sigma): what training indexes and manifests store."""
        return np.array([self.alpha_sigma(t) for t in range(self.timesteps)], dtype=np.float32)

    def sampling_timesteps(self, steps: int) -> list[int]:
        """`steps` timesteps from the noisiest (T-1) down, evenly spaced ("trailing": K=4 gives 999, 749, 499, 249).

        The samplers return the clean-sample prediction made at the last one, which is DDIM's final step to a clean
        sample. Trailing spacing measured better than uniform or log-SNR spacing at 2-8 steps (tests/engine).
        """
        if not 1 <= steps <= min(50, self.timesteps):
            raise ValueError(f"steps={steps}: choose between 1 and {min(50, self.timesteps)}")
        return [round(self.timesteps - 1 - i * self.timesteps / steps) for i in range(steps)]


def ddim(predict_x0: DataPredictor, noise: Array, schedule: CosineSchedule, steps: int) -> Array:
    """DDIM with eta = 0 (Song et al. 2021, "Denoising Diffusion Implicit Models"): deterministic given the noise."""
    x = noise
    timesteps = schedule.sampling_timesteps(steps)
    x0 = noise
    for i, t in enumerate(timesteps):
        alpha, sigma = schedule.alpha_sigma(t)
        x0 = predict_x0(x, t)
        if i + 1 == len(timesteps):
            break
        eps = (x - alpha * x0) * (1.0 / sigma)
        alpha_next, sigma_next = schedule.alpha_sigma(timesteps[i + 1])
        x = alpha_next * x0 + sigma_next * eps
    return x0


def dpmpp_2m(predict_x0: DataPredictor, noise: Array, schedule: CosineSchedule, steps: int) -> Array:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++"): second-order multistep in log-SNR, data prediction."""
    x = noise
    timesteps = schedule.sampling_timesteps(steps)
    previous_x0: Array | None = None
    previous_h = 0.0
    x0 = noise
    for i, t in enumerate(timesteps):
        alpha, sigma = schedule.alpha_sigma(t)
        x0 = predict_x0(x, t)
        if i + 1 == len(timesteps):
            break
        alpha_next, sigma_next = schedule.alpha_sigma(timesteps[i + 1])
        h = math.log(alpha_next / sigma_next) - math.log(alpha / sigma)
        if previous_x0 is None:
            d = x0
        else:
            r = previous_h / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * previous_x0
        x = (sigma_next / sigma) * x - alpha_next * math.expm1(-h) * d
        previous_x0, previous_h = x0, h
    return x0


class Sampler(Protocol):
    def __call__(self, predict_x0: DataPredictor, noise: Array, schedule: CosineSchedule, steps: int) -> Array: ...


class SamplerKind(StrEnum):
    DDIM = "ddim"
    DPMPP_2M = "dpmpp2m"


SAMPLERS: dict[SamplerKind, Sampler] = {SamplerKind.DDIM: ddim, SamplerKind.DPMPP_2M: dpmpp_2m}


def get_sampler(name: str) -> Sampler:
    """The sampler called `name` ("ddim" or "dpmpp2m"); an unknown name lists the choices."""
    try:
        return SAMPLERS[SamplerKind(name)]
    except ValueError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {[k.value for k in SamplerKind]}") from None


def v_to_x0(v: Array, x: Array, alpha: float, sigma: float) -> Array:
    """Clean-sample prediction from a v-prediction: x0 = alpha·x_t - sigma·v."""
    return alpha * x - sigma * v


def guided_x0(v_cond: Array, v_uncond: Array, x: Array, alpha: float, sigma: float, guidance: float) -> Array:
    """Classifier-free guidance (Ho & Salimans 2022) in x0 space: x0_u + guidance·(x0_c - x0_u)."""
    x0_uncond = v_to_x0(v_uncond, x, alpha, sigma)
    return x0_uncond + guidance * (v_to_x0(v_cond, x, alpha, sigma) - x0_uncond)
