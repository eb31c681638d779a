"""Smoothing of the emitted listener stream: a per-dimension One Euro filter, hold/decay fill, and the seam jerk.

    params = OneEuroConfig().per_dimension(83)              # (83,) min_cutoff / beta / d_cutoff
    smooth = OneEuroFilter(params, fps=25.0)
    frames = smooth(new_frames)                              # (n, 83) -> (n, 83), any block size
    same = one_euro(all_frames, params, fps=25.0)            # a whole clip: the same numbers

The One Euro filter (Casiez, Roussel and Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter for Noisy Input
in Interactive Systems", CHI 2012) is an exponential low-pass whose cutoff rises with the signal's speed: slow
drift is smoothed hard (no jitter), fast moves (a blink, a nod) pass with little lag. Every step is vectorised
over the frame's dimensions, each with its own parameters (one group each for blendshapes, head rotation,
head translation and emotion). The seam blend itself is `engine.windows.join_at_seam`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from renderer.face import BLENDSHAPES, FACE_DIM, FPS, ROTATION, TRANSLATION

Array = NDArray[np.float32]


@dataclass(frozen=True)
class OneEuroParams:
    """Parameters of one dimension group."""

    min_cutoff: float
    """Cutoff frequency in Hz when the signal is still: lower = smoother, more lag."""
    beta: float
    """How fast the cutoff rises with speed (Hz per unit/s): higher = less lag on fast moves."""
    d_cutoff: float = 1.0
    """Cutoff in Hz of the low-pass on the speed estimate."""


@dataclass(frozen=True)
class OneEuroConfig:
    """One Euro parameters per dimension group of a listener frame (58 face values, then emotion values)."""

    blendshapes: OneEuroParams = field(default_factory=lambda: OneEuroParams(min_cutoff=2.0, beta=0.3))
    """52 blendshape weights in [0, 1]: a blink (~5 units/s) raises the cutoff to ~3.5 Hz."""
    rotation: OneEuroParams = field(default_factory=lambda: OneEuroParams(min_cutoff=1.0, beta=1.0))
    """Head pitch/yaw/roll in radians: nods move ~0.5 rad/s."""
    translation: OneEuroParams = field(default_factory=lambda: OneEuroParams(min_cutoff=1.0, beta=1.0))
    """Head translation in 10 cm units: slow sway."""
    emotion: OneEuroParams = field(default_factory=lambda: OneEuroParams(min_cutoff=1.5, beta=0.2))
    """Emotion values (AUs, valence/arousal, expression probabilities).

    Defaults: chosen on the tiny model's streaming output (synthetic test split) to keep the seam jerk ratio
    under 1.3 while passing nods and blinks; tune per model with benchmarks/streaming.py."""

    def per_dimension(self, dim: int) -> tuple[Array, Array, Array]:
        """(min_cutoff, beta, d_cutoff), each (dim,), for frames of `dim` values (58 face [+ emotion])."""
        if dim < FACE_DIM:
            raise ValueError(f"One Euro parameters: frames must hold at least the {FACE_DIM} face values, got {dim}")
        groups = [(BLENDSHAPES, self.blendshapes), (ROTATION, self.rotation), (TRANSLATION, self.translation)]
        groups.append((slice(FACE_DIM, dim), self.emotion))
        out = np.zeros((3, dim), np.float32)
        for where, p in groups:
            out[:, where] = np.array([p.min_cutoff, p.beta, p.d_cutoff], np.float32)[:, None]
        return out[0], out[1], out[2]


@dataclass
class OneEuroState:
    """What the filter remembers between frames: the last output and the last filtered speed, both (D,)."""

    value: Array
    speed: Array


def smoothing_factor(cutoff: NDArray[np.floating], dt: float) -> Array:
    """Exponential smoothing factor alpha = 1 / (1 + tau/dt), tau = 1 / (2 pi cutoff), per dimension."""
    tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff, np.float64))
    return (1.0 / (1.0 + tau / dt)).astype(np.float32)


def one_euro_step(
    x: Array, state: OneEuroState | None, params: tuple[Array, Array, Array], dt: float
) -> tuple[Array, OneEuroState]:
    """Filter one frame x (D,) given the previous state (None at the first frame); returns (output, new state)."""
    if state is None:  # the first frame passes unchanged, speed starts at 0
        return x.copy(), OneEuroState(x.copy(), np.zeros_like(x))
    min_cutoff, beta, d_cutoff = params
    speed = (x - state.value) / dt
    a_d = smoothing_factor(d_cutoff, dt)
    speed_hat = a_d * speed + (1 - a_d) * state.speed
    a = smoothing_factor(min_cutoff + beta * np.abs(speed_hat), dt)
    y = (a * x + (1 - a) * state.value).astype(np.float32)
    return y, OneEuroState(y, speed_hat.astype(np.float32))


def one_euro_block(
    frames: Array, state: OneEuroState | None, params: tuple[Array, Array, Array], dt: float
) -> tuple[Array, OneEuroState | None]:
    """Filter frames (n, D) in order, continuing from `state`; returns (filtered (n, D), state after them)."""
    out = np.empty_like(frames, dtype=np.float32)
    for i, x in enumerate(np.asarray(frames, np.float32)):
        out[i], state = one_euro_step(x, state, params, dt)
    return out, state


def one_euro(frames: Array, params: tuple[Array, Array, Array], fps: float = FPS) -> Array:
    """A whole (T, D) sequence through a fresh One Euro filter: what `OneEuroFilter` emits frame by frame."""
    return one_euro_block(frames, None, params, 1.0 / fps)[0]


class OneEuroFilter:
    """Stateful One Euro filter over a stream of (n, D) blocks; `filter(block)` equals `one_euro` on the stream."""

    def __init__(self, params: tuple[Array, Array, Array], *, fps: float = FPS) -> None:
        if fps <= 0:
            raise ValueError(f"One Euro filter: fps must be positive, got {fps}")
        if any(np.any(p <= 0) for p in (params[0], params[2])):
            raise ValueError("One Euro filter: min_cutoff and d_cutoff must be positive (Hz)")
        self.params, self.dt = params, 1.0 / fps
        self._state: OneEuroState | None = None

    def __call__(self, frames: Array) -> Array:
        """Filter the next (n, D) frames of the stream."""
        out, self._state = one_euro_block(frames, self._state, self.params, self.dt)
        return out


def hold_decay(last: Array, target: Array, count: int, *, start: int = 1, tau_frames: float = 25.0) -> Array:
    """(count, D) frames that hold `last` (D,) and decay towards `target` (D,) with time constant `tau_frames`.

    Frame i of the result is `start + i` frames after `last`: a fill that continues an earlier fill passes
    the number of frames already filled + 1 as `start`, so the decay carries on where it stopped.
    """
    steps = np.arange(start, start + count, dtype=np.float64)[:, None]
    fade = np.exp(-steps / tau_frames).astype(np.float32)
    return (target + (last - target) * fade).astype(np.float32)


def jerk(frames: Array) -> Array:
    """Third difference along time: (T, D) -> (T-3, D); entry t spans frames t..t+3."""
    return np.diff(np.asarray(frames, np.float64), n=3, axis=0).astype(np.float32)


def seam_jerk_ratio(frames: Array, seams: list[int] | NDArray[np.integer]) -> float:
    """Mean |jerk| on third differences that span a seam over the mean elsewhere (1.0 = seams invisible).

    `frames` (T, D); a seam at s means frame s is the first frame of a new window (s-1 came from the one
    before). The third differences touching both s-1 and s start at t = s-3 .. s-1. Dimensions are pooled.
    """
    j = np.abs(jerk(frames))
    at_seam = np.zeros(len(j), dtype=bool)
    for s in seams:
        at_seam[max(0, s - 3) : max(0, min(s, len(j)))] = True
    if not at_seam.any() or at_seam.all():
        raise ValueError(f"seam jerk ratio needs frames both at and away from seams ({len(frames)} frames)")
    elsewhere = float(j[~at_seam].mean())
    return float(j[at_seam].mean()) / max(elsewhere, 1e-12)
