"""The REACT challenge's reference reaction generators: Random, Mime, MeanSeq and MeanFr.

    from trainer.baselines import BASELINES
    pred = BASELINES["mime"](speaker, train_listeners, samples=10, rng=np.random.default_rng(0))  # (N, 10, T, D)

Every baseline follows `Baseline`: speaker (N, T, D) and training sequences (M, T', D) in, predictions
(N, samples, T, D) float32 out, for any D (25 emotion values or 58 face values). Each one copies what the official
`run_baselines.py` (REACT 2023/2024) does; the docstrings say where ours adds an option.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray


class BaselineInputError(ValueError):
    """An array handed to a baseline has the wrong shape or values; the message names it."""


class Baseline(Protocol):
    """speaker (N, T, D), train_listeners (M, T', D) -> (N, samples, T, D) float32 predictions."""

    def __call__(
        self,
        speaker: ArrayLike,
        train_listeners: ArrayLike,
        *,
        samples: int = 10,
        rng: np.random.Generator | int | None = None,
    ) -> NDArray[np.float32]: ...


def _check(speaker: ArrayLike, train_listeners: ArrayLike, samples: int) -> tuple[NDArray, NDArray]:
    spk, train = np.asarray(speaker), np.asarray(train_listeners)
    for name, arr in (("speaker", spk), ("train_listeners", train)):
        if arr.ndim != 3 or 0 in arr.shape or arr.dtype.kind not in "biuf":
            raise BaselineInputError(f"{name}: expected a numeric (count, T, D) array, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise BaselineInputError(f"{name}: holds {int((~np.isfinite(arr)).sum())} NaN/inf values")
    if spk.shape[-1] != train.shape[-1]:
        raise BaselineInputError(
            f"train_listeners: {train.shape[-1]} values per frame, but speaker has {spk.shape[-1]}; use one layout"
        )
    if samples < 1:
        raise BaselineInputError(f"samples must be >= 1, got {samples}")
    return spk, train


def _repeat(frames: NDArray, n: int, samples: int) -> NDArray[np.float32]:
    """(T, D) or (N, T, D) frames -> (N, samples, T, D) float32, one copy per sample."""
    per_sample = np.broadcast_to(frames, (n, *frames.shape[-2:]))
    return np.repeat(per_sample[:, None], samples, axis=1).astype(np.float32)


def random_baseline(
    speaker: ArrayLike,
    train_listeners: ArrayLike,
    *,
    samples: int = 10,
    rng: np.random.Generator | int | None = None,
    low: ArrayLike = 0.0,
    high: ArrayLike = 1.0,
) -> NDArray[np.float32]:
    """Random: every value drawn independently and uniformly from [low, high).

    The official baseline is `torch.rand`: uniform in [0, 1) for every dimension (valence and arousal included,
    although their range is [-1, 1]); those are the defaults. `low`/`high` may be per-dimension (D,) arrays, e.g.
    `renderer.face.FACE_LOW`/`FACE_HIGH` for 58-d faces. The training sequences are not used.
    """
    spk, _ = _check(speaker, train_listeners, samples)
    n, t, d = spk.shape
    generator = np.random.default_rng(rng)
    lo, hi = np.broadcast_to(low, (d,)), np.broadcast_to(high, (d,))
    return generator.uniform(lo, hi, size=(n, samples, t, d)).astype(np.float32)


def mime_baseline(
    speaker: ArrayLike,
    train_listeners: ArrayLike,
    *,
    samples: int = 10,
    rng: np.random.Generator | int | None = None,
    lag: int = 0,
) -> NDArray[np.float32]:
    """Mime: the listener copies the speaker's own signal, `lag` frames late; all samples are identical.

    The official baseline repeats the speaker's sequence unchanged (lag 0) as every one of the predictions, so
    its FRDiv is 0. With `lag` > 0, frame t is the speaker's frame t - lag and the first `lag` frames hold the
    speaker's first frame. Neither `rng` nor the training sequences are used.
    """
    spk, _ = _check(speaker, train_listeners, samples)
    if lag < 0:
        raise BaselineInputError(f"lag must be >= 0 frames, got {lag}")
    t = spk.shape[1]
    index = np.maximum(np.arange(t) - lag, 0)  # frame t shows the speaker at t - lag
    return _repeat(spk[:, index], spk.shape[0], samples)


def mean_sequence_baseline(
    speaker: ArrayLike,
    train_listeners: ArrayLike,
    *,
    samples: int = 10,
    rng: np.random.Generator | int | None = None,
) -> NDArray[np.float32]:
    """MeanSeq: the frame-by-frame mean of the training sequences, the same for every speaker and sample.

    The official baseline averages the emotion sequences of both the speakers and the listeners of the
    training pairs: pass them stacked as `train_listeners` to reproduce it exactly. Frames beyond the
    training length T' (when T > T') take the mean frame (see `mean_frame_baseline`). `rng` is not used.
    """
    spk, train = _check(speaker, train_listeners, samples)
    n, t, _ = spk.shape
    mean_seq = train.astype(np.float64).mean(axis=0)  # (T', D)
    if t > mean_seq.shape[0]:
        tail = np.broadcast_to(mean_seq.mean(axis=0), (t - mean_seq.shape[0], mean_seq.shape[1]))
        mean_seq = np.concatenate([mean_seq, tail])
    return _repeat(mean_seq[:t], n, samples)


def mean_frame_baseline(
    speaker: ArrayLike,
    train_listeners: ArrayLike,
    *,
    samples: int = 10,
    rng: np.random.Generator | int | None = None,
) -> NDArray[np.float32]:
    """MeanFr: the mean training frame (over sequences and time), held still for every frame and sample.

    As the official baseline, it is the time-average of MeanSeq's sequence; its FRVar, FRDiv and FRDvs are 0
    and its FRSyn is the official maximum 49 (a constant prediction). `rng` is not used.
    """
    spk, train = _check(speaker, train_listeners, samples)
    n, t, d = spk.shape
    mean_frame = train.astype(np.float64).mean(axis=(0, 1))  # (D,)
    return _repeat(np.broadcast_to(mean_frame, (t, d)), n, samples)


BASELINES: dict[str, Baseline] = {
    "random": random_baseline,
    "mime": mime_baseline,
    "meanseq": mean_sequence_baseline,
    "meanfr": mean_frame_baseline,
}
