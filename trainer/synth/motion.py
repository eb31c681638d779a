"""Smooth motion primitives shared by the synthetic speaker and listeners: pure functions on numpy arrays.

Tracks are (T,) float arrays at 25 fps. Every event is drawn with a smooth kernel (raised-cosine edges,
sin² nod cycles), so faces never jump between frames except for the few-frame closure of a blink.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import gaussian_filter1d

from renderer.face import BLENDSHAPE_INDEX, FACE_INDEX, FPS

BLINK_SHAPE = np.array([0.3, 0.85, 1.0, 0.75, 0.4, 0.15], dtype=np.float32)  # closure over 6 frames (240 ms)


def seconds_to_frames(seconds: float) -> int:
    return round(seconds * FPS)


def smooth(track: ArrayLike, sigma_frames: float) -> NDArray[np.float32]:
    """Gaussian low-pass along time (axis 0); edges hold their value."""
    return gaussian_filter1d(np.asarray(track, dtype=np.float32), sigma_frames, axis=0, mode="nearest")


def lagged(track: NDArray[np.floating], lag_frames: int) -> NDArray[np.float32]:
    """`track` delayed by `lag_frames` (≥ 0); the first value fills the start."""
    track = np.asarray(track, dtype=np.float32)
    if lag_frames <= 0:
        return track.copy()
    return np.concatenate([np.full(lag_frames, track[0], dtype=np.float32), track[:-lag_frames]])


def envelope(attack: int, hold: int, release: int) -> NDArray[np.float32]:
    """A 0→1→0 envelope: raised-cosine attack and release (frames), flat hold in between."""
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, attack + 1) / (attack + 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, release + 1) / (release + 1))
    return np.concatenate([rise, np.ones(hold), fall]).astype(np.float32)


def nod_kernel(amplitude: float, cycles: int, cycle_frames: int) -> NDArray[np.float32]:
    """Head pitch (radians) of a nod: `cycles` chin-down dips, each sin²-shaped and 40% smaller than the last."""
    phase = np.arange(cycle_frames) / cycle_frames
    dips = [-(amplitude * 0.6**c) * np.sin(np.pi * phase) ** 2 for c in range(cycles)]
    return np.concatenate(dips).astype(np.float32)


def add_at(track: NDArray[np.float32], kernel: NDArray[np.floating], at: int) -> None:
    """Add `kernel` into `track` starting at frame `at`; the parts outside the track are dropped."""
    lo, hi = max(at, 0), min(at + len(kernel), len(track))
    if lo < hi:
        track[lo:hi] += kernel[lo - at : hi - at]


def max_at(track: NDArray[np.float32], kernel: NDArray[np.floating], at: int) -> None:
    """Like `add_at`, but overlapping events keep the larger value instead of adding up (smiles, brow raises)."""
    lo, hi = max(at, 0), min(at + len(kernel), len(track))
    if lo < hi:
        track[lo:hi] = np.maximum(track[lo:hi], kernel[lo - at : hi - at])


def poisson_onsets(rng: np.random.Generator, frames: int, rate_per_min: float, refractory: int) -> list[int]:
    """Random event frames at `rate_per_min`, at least `refractory` frames apart."""
    mean_gap = FPS * 60.0 / max(rate_per_min, 1e-6)
    onsets, t = [], float(rng.exponential(mean_gap))
    while t < frames:
        onsets.append(int(t))
        t += max(refractory, rng.exponential(mean_gap))
    return onsets


def blink_track(rng: np.random.Generator, frames: int, rate_per_min: float, extra: Iterable[int] = ()) -> NDArray:
    """(T,) eyelid closure in [0, 1]: random blinks at `rate_per_min` plus blinks at the `extra` frames."""
    track = np.zeros(frames, dtype=np.float32)
    for at in sorted({*poisson_onsets(rng, frames, rate_per_min, refractory=FPS), *extra}):
        add_at(track, BLINK_SHAPE * rng.uniform(0.85, 1.0), at)
    return np.clip(track, 0.0, 1.0)


def gaze_track(rng: np.random.Generator, frames: int, shifts_per_min: float, amplitude: float) -> NDArray:
    """(T, 2) gaze direction (x + = image right, y + = up): fixations joined by quick smooth saccades."""
    targets = np.zeros((frames, 2), dtype=np.float32)
    onsets = [0, *poisson_onsets(rng, frames, shifts_per_min, refractory=FPS // 2), frames]
    for a, b in itertools.pairwise(onsets):
        # half the fixations return to the partner's face (centre)
        targets[a:b] = 0.0 if rng.random() < 0.5 else rng.uniform(-amplitude, amplitude, size=2)
    return smooth(targets, 1.0)


def sway(rng: np.random.Generator, frames: int, amplitude: float, seconds: float = 1.2) -> NDArray[np.float32]:
    """(T,) slow random drift: Gaussian noise low-passed over `seconds`, scaled to standard deviation `amplitude`."""
    pad = 4 * seconds_to_frames(seconds)
    noise = smooth(rng.standard_normal(frames + 2 * pad), seconds * FPS)[pad : pad + frames]
    return (noise * (amplitude / max(float(np.std(noise)), 1e-9))).astype(np.float32)


# --- writing tracks into (T, 58) faces ---------------------------------------------------------------------


def set_pair(face: NDArray[np.float32], stem: str, values: NDArray[np.floating], asymmetry: float = 0.0) -> None:
    """Write `values` into ``stemLeft``/``stemRight``; `asymmetry` > 0 makes the left side stronger."""
    face[:, BLENDSHAPE_INDEX[stem + "Left"]] += values * (1.0 + asymmetry)
    face[:, BLENDSHAPE_INDEX[stem + "Right"]] += values * (1.0 - asymmetry)


def add_to(face: NDArray[np.float32], name: str, values: NDArray[np.floating]) -> None:
    """Add `values` to the face column `name` (a blendshape, pitch/yaw/roll or tx/ty/tz)."""
    face[:, FACE_INDEX[name]] += values


def set_eyes(face: NDArray[np.float32], blink: NDArray[np.floating], gaze: NDArray[np.floating]) -> None:
    """Eyelids from a (T,) blink track, eye direction from a (T, 2) gaze track (see `gaze_track`)."""
    set_pair(face, "eyeBlink", blink)
    x, y = gaze[:, 0], gaze[:, 1]
    # looking to the image right turns the left eye outwards and the right eye inwards
    add_to(face, "eyeLookOutLeft", np.maximum(x, 0))
    add_to(face, "eyeLookInRight", np.maximum(x, 0))
    add_to(face, "eyeLookInLeft", np.maximum(-x, 0))
    add_to(face, "eyeLookOutRight", np.maximum(-x, 0))
    set_pair(face, "eyeLookUp", np.maximum(y, 0))
    set_pair(face, "eyeLookDown", np.maximum(-y, 0))


def set_head(face: NDArray[np.float32], pitch: NDArray, yaw: NDArray, roll: NDArray) -> None:
    """Head rotation (radians) and the small translation that goes with it (the neck pivots below the head)."""
    add_to(face, "pitch", pitch)
    add_to(face, "yaw", yaw)
    add_to(face, "roll", roll)
    add_to(face, "tx", 0.25 * yaw - 0.2 * roll)
    add_to(face, "ty", 0.15 * pitch)
    add_to(face, "tz", 0.1 * pitch)
