"""Tests for trainer.baselines: the official Random/Mime/MeanSeq/MeanFr definitions, scored with trainer.metrics."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from renderer.face import EMOTION_DIM, FACE_DIM, FACE_HIGH, FACE_LOW
from trainer import metrics
from trainer.baselines import (
    BASELINES,
    BaselineInputError,
    mean_frame_baseline,
    mean_sequence_baseline,
    mime_baseline,
    random_baseline,
)


def smooth(rng: np.random.Generator, shape: tuple[int, int, int], width: int = 7) -> NDArray[np.float64]:
    """(N, T, D) random curves smoothed over time, in [0, 1]."""
    n, t, d = shape
    noise = rng.random((n, t + width - 1, d))
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 1, noise)


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("dim", [EMOTION_DIM, FACE_DIM])
def test_every_baseline_gives_predictions_of_the_metric_shape(name: str, dim: int) -> None:
    rng = np.random.default_rng(0)
    speaker, train = rng.random((3, 40, dim)), rng.random((5, 40, dim))
    pred = BASELINES[name](speaker, train, samples=4, rng=np.random.default_rng(1))
    assert pred.shape == (3, 4, 40, dim)
    assert pred.dtype == np.float32
    assert np.isfinite(pred).all()


def test_random_is_uniform_in_zero_one_like_the_official_torch_rand() -> None:
    speaker, train = np.zeros((4, 200, EMOTION_DIM)), np.zeros((1, 200, EMOTION_DIM))
    pred = random_baseline(speaker, train, samples=10, rng=3)
    assert pred.min() >= 0.0 and pred.max() < 1.0
    assert pred.mean() == pytest.approx(0.5, abs=0.01)
    assert pred.var() == pytest.approx(1 / 12, abs=0.005)
    np.testing.assert_array_equal(pred, random_baseline(speaker, train, samples=10, rng=3))  # seeded
    assert not np.array_equal(pred, random_baseline(speaker, train, samples=10, rng=4))


def test_random_face_ranges_per_dimension() -> None:
    speaker = np.zeros((2, 100, FACE_DIM))
    pred = random_baseline(speaker, speaker, samples=3, rng=0, low=FACE_LOW, high=FACE_HIGH)
    assert (pred >= FACE_LOW).all() and (pred <= FACE_HIGH).all()
    assert pred[..., 52:55].min() < -0.5  # rotations use their own range, not [0, 1)


def test_mime_copies_the_speaker_with_a_lag() -> None:
    rng = np.random.default_rng(2)
    speaker = rng.random((2, 30, EMOTION_DIM))
    same = mime_baseline(speaker, speaker, samples=10)
    np.testing.assert_allclose(same, np.repeat(speaker[:, None], 10, axis=1), rtol=1e-6)  # official: lag 0
    late = mime_baseline(speaker, speaker, samples=2, lag=3)
    np.testing.assert_allclose(late[:, :, 3:], np.repeat(speaker[:, None, :-3], 2, axis=1), rtol=1e-6)
    np.testing.assert_allclose(late[:, :, :3], np.repeat(speaker[:, None, :1], 2, axis=1).repeat(3, axis=2), rtol=1e-6)
    assert metrics.fr_div(same) == 0.0  # ten identical samples
    with pytest.raises(BaselineInputError, match="lag"):
        mime_baseline(speaker, speaker, lag=-1)


def test_mime_scores_high_frcorr_when_the_listener_copies_the_speaker() -> None:
    rng = np.random.default_rng(4)
    lag = 4
    speaker = smooth(rng, (5, 80, EMOTION_DIM))
    listener = np.concatenate([np.repeat(speaker[:, :1], lag, axis=1), speaker[:, :-lag]], axis=1)  # copies, late
    neighbours = np.eye(5, dtype=int)
    mime = mime_baseline(speaker, listener, samples=10, lag=lag)
    random = random_baseline(speaker, listener, samples=10, rng=0)
    assert metrics.fr_corr(mime, listener, neighbours, corrected=True) == pytest.approx(1.0, abs=1e-6)
    assert metrics.fr_corr(mime, listener, neighbours) > 9.9  # official sum over the 10 predictions
    assert metrics.fr_corr(random, listener, neighbours, corrected=True) < 0.2
    unlagged = mime_baseline(speaker, listener, samples=10)
    assert metrics.fr_syn(unlagged, listener) == lag  # the listener is `lag` frames behind the mime


def test_mean_sequence_and_mean_frame() -> None:
    rng = np.random.default_rng(5)
    train = rng.random((6, 50, EMOTION_DIM))
    speaker = rng.random((2, 40, EMOTION_DIM))
    seq = mean_sequence_baseline(speaker, train, samples=3)
    np.testing.assert_allclose(seq[1, 2], train.mean(axis=0)[:40], rtol=1e-6)
    frame = mean_frame_baseline(speaker, train, samples=3)
    np.testing.assert_allclose(frame[0, 1], np.broadcast_to(train.mean(axis=(0, 1)), (40, EMOTION_DIM)), rtol=1e-6)
    assert metrics.fr_var(frame) == pytest.approx(0.0, abs=1e-12)
    listener = rng.random((2, 60, EMOTION_DIM))
    constant = mean_frame_baseline(listener, train, samples=2)
    assert metrics.fr_syn(constant, listener) == 49.0
    longer = mean_sequence_baseline(rng.random((1, 70, EMOTION_DIM)), train, samples=1)
    np.testing.assert_allclose(longer[0, 0, 50:], np.broadcast_to(train.mean(axis=(0, 1)), (20, 25)), rtol=1e-6)


@pytest.mark.parametrize(
    ("speaker_shape", "train_shape", "message"),
    [
        ((2, 30), (3, 30, 25), "speaker: expected a numeric (count, T, D) array"),
        ((2, 30, 25), (3, 30, 58), "train_listeners: 58 values per frame, but speaker has 25"),
    ],
)
def test_bad_inputs(speaker_shape: tuple[int, ...], train_shape: tuple[int, ...], message: str) -> None:
    for fn in BASELINES.values():
        with pytest.raises(BaselineInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            fn(np.zeros(speaker_shape), np.zeros(train_shape))


def test_nan_and_samples_are_checked() -> None:
    speaker = np.zeros((2, 30, 25))
    speaker[1, 3, 4] = np.nan
    with pytest.raises(BaselineInputError, match="speaker: holds 1 NaN/inf"):
        mime_baseline(speaker, np.zeros((1, 30, 25)))
    with pytest.raises(BaselineInputError, match="samples"):
        mean_frame_baseline(np.zeros((2, 30, 25)), np.zeros((1, 30, 25)), samples=0)
