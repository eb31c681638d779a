"""Tests for trainer.metrics: golden values from the official REACT code, each quirk, invariants, bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from trainer import cli, metrics
from trainer.metrics import METRIC_NAMES, MetricInputError, compute_all

Case = tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]


def make_case(seed: int, *, quirky: bool) -> Case:
    """Seeded (pred, listener, speaker, neighbours) with N=6, 10 predictions, T=60, 25 dims.

    The golden numbers below were computed by running the official challenge functions on exactly these arrays.
    """
    rng = np.random.default_rng(seed)
    n, s, t, d = 6, 10, 60, 25
    speaker = rng.random((n, t, d)).astype(np.float32)
    listener = rng.random((n, t, d)).astype(np.float32)
    noise = rng.random((n, s, t, d)).astype(np.float32)
    mix = rng.random((n, s, 1, 1)).astype(np.float32)
    source = listener[rng.integers(0, n, size=(n, s))]  # (n, s, t, d): partly copy some listener
    pred = mix * source + (np.float32(1.0) - mix) * noise
    for k in range(n):  # first prediction: follows the speaker 3k frames late (FRSyn)
        pred[k, 0] = np.float32(0.8) * np.roll(speaker[k], 3 * k, axis=0) + np.float32(0.2) * noise[k, 0]
    neighbours = (rng.random((n, n)) < 0.35).astype(np.int64)
    np.fill_diagonal(neighbours, 1)
    if quirky:
        listener[:, :, 3] = 0.0  # an AU that no listener shows: a constant dimension
        pred[1, :, :, 20] = 0.5  # sample 1: one expression held constant in every prediction
        pred[2, 0] = 0.25  # sample 2: a frozen first prediction
        speaker[3, :, 16] = 0.0  # sample 3: a speaker whose arousal never moves
        pred[4, 0, 30:, 0] = 0.0  # sample 4: an AU constant from frame 30 on (NaN only for lags >= 30)
    return pred, listener, speaker, neighbours


# Numbers printed by the official functions (baseline_react2024 `metric/`: compute_FRC_mp, compute_FRD_mp,
# compute_s_mse, compute_FRVar, compute_FRDvs, compute_TLCC_mp; tslearn 0.10 DTW) on `make_case` arrays.
OFFICIAL = {
    "random": {
        "FRCorr": 3.164371875345821,
        "FRDist": 35.54573825172508,
        "FRDiv": 0.10211053490638733,
        "FRVar": 0.05402408912777901,
        "FRDvs": 0.10224955528974533,
        "FRSyn": 13.5,
    },
    "quirky": {
        "FRCorr": 4.031868560689831,
        "FRDist": 33.83234175241504,
        "FRDiv": 0.10255514830350876,
        "FRVar": 0.05394243448972702,
        "FRDvs": 0.10201098769903183,
        "FRSyn": 32.0,
    },
}
# The official non-pooled compute_TLCC (all 10 predictions) on the "random" case: with no constant dimension
# it equals our corrected FRSyn.
OFFICIAL_TLCC_ALL_PREDICTIONS_RANDOM = 38.650001525878906
CASES = {"random": (0, False), "quirky": (1, True)}


def smooth_signals(rng: np.random.Generator, shape: tuple[int, ...], width: int = 9) -> NDArray[np.float64]:
    """Random signals smoothed over time (axis -2), like real emotion curves."""
    noise = rng.standard_normal((*shape[:-2], shape[-2] + width - 1, shape[-1]))
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), -2, noise)


@pytest.mark.parametrize("case", sorted(CASES))
def test_compute_all_matches_the_official_code(case: str) -> None:
    seed, quirky = CASES[case]
    pred, listener, speaker, neighbours = make_case(seed, quirky=quirky)
    assert (neighbours != neighbours.T).any()  # the real matrix is not symmetric either
    scores = compute_all(pred, listener, speaker, neighbours)
    assert list(scores) == list(METRIC_NAMES)
    for name, value in OFFICIAL[case].items():
        assert scores[name] == pytest.approx(value, abs=1e-4), name


def test_corrected_frsyn_is_the_official_all_prediction_tlcc_without_constant_dims() -> None:
    pred, _, speaker, _ = make_case(0, quirky=False)
    assert metrics.fr_syn(pred, speaker, corrected=True) == pytest.approx(
        OFFICIAL_TLCC_ALL_PREDICTIONS_RANDOM, abs=1e-4
    )


def naive_dtw(x: NDArray, y: NDArray) -> float:
    acc = np.full((len(x) + 1, len(y) + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            cost = float(((x[i - 1] - y[j - 1]) ** 2).sum())
            acc[i, j] = cost + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(np.sqrt(acc[-1, -1]))


@pytest.mark.parametrize(("n", "m", "d"), [(1, 1, 1), (1, 6, 2), (6, 1, 3), (9, 13, 15), (20, 17, 8)])
def test_dtw_matches_the_textbook_recursion(n: int, m: int, d: int) -> None:
    rng = np.random.default_rng(n * 100 + m)
    x, y = rng.random((n, d)), rng.random((m, d))
    assert metrics.dtw(x, y) == pytest.approx(naive_dtw(x, y), rel=1e-12)
    assert metrics.dtw(x, x) == pytest.approx(0.0, abs=1e-6)


def test_dtw_forgives_a_time_shift_that_euclidean_distance_does_not() -> None:
    t = np.linspace(0, 6, 80)
    x, y = np.sin(t)[:, None], np.sin(t - 0.3)[:, None]  # y lags x by 4 frames
    assert metrics.dtw(x, y) < 0.35 * np.linalg.norm(x - y)


def test_frcorr_sums_over_predictions_and_can_exceed_one() -> None:
    rng = np.random.default_rng(3)
    listener = smooth_signals(rng, (4, 60, 25))
    perfect = np.repeat(listener[:, None], 10, axis=1)
    neighbours = np.eye(4, dtype=int)
    official = metrics.fr_corr(perfect, listener, neighbours)
    assert official == pytest.approx(10.0, abs=1e-4)  # 10 predictions x CCC 1
    assert metrics.fr_corr(perfect, listener, neighbours, corrected=True) == pytest.approx(1.0, abs=1e-6)
    assert metrics.fr_corr(perfect[:, :3], listener, neighbours) == pytest.approx(3.0, abs=1e-4)


def test_frcorr_takes_the_best_appropriate_listener() -> None:
    rng = np.random.default_rng(4)
    listener = smooth_signals(rng, (3, 60, 25))
    pred = np.repeat(listener[[1, 2, 0]][:, None], 2, axis=1)  # sample k predicts listener k+1's reaction
    assert metrics.fr_corr(pred, listener, np.eye(3), corrected=True) < 0.5
    shifted = np.roll(np.eye(3), 1, axis=1) + np.eye(3)  # ... which row k marks as appropriate
    assert metrics.fr_corr(pred, listener, shifted, corrected=True) == pytest.approx(1.0, abs=1e-6)


def test_constant_dimension_counts_as_zero_officially_and_is_left_out_when_corrected() -> None:
    rng = np.random.default_rng(5)
    target = smooth_signals(rng, (60, 25))
    target[:, 3] = 0.0
    assert metrics.ccc(target, target) == pytest.approx(24 / 25, abs=1e-6)
    assert metrics.ccc(target, target, corrected=True) == pytest.approx(1.0, abs=1e-12)
    frozen = np.full((60, 25), 0.3)
    assert metrics.ccc(frozen, target) == pytest.approx(0.0, abs=1e-12)
    assert metrics.ccc(frozen, target, corrected=True) == pytest.approx(0.0, abs=1e-12)


def test_frsyn_finds_the_lag_of_a_listener_that_follows_the_speaker() -> None:
    rng = np.random.default_rng(6)
    speaker = rng.random((3, 80, 25))
    pred = np.stack([np.roll(speaker, lag, axis=1) for lag in (5, 5)], axis=1)  # pred[t] = speaker[t - 5]
    assert metrics.fr_syn(pred, speaker) == 5.0
    assert metrics.fr_syn(pred, speaker, corrected=True) == 5.0


def test_frsyn_is_49_for_a_constant_prediction_and_any_constant_dimension() -> None:
    rng = np.random.default_rng(7)
    speaker = rng.random((2, 80, 25))
    frozen = np.full((2, 3, 80, 25), 0.5)
    assert metrics.fr_syn(frozen, speaker) == 49.0
    assert metrics.fr_syn(frozen, speaker, corrected=True) == 49.0  # nothing measurable: the worst score
    mime = np.repeat(speaker[:, None], 3, axis=1)
    mime[:, :, :, 20] = 0.0  # one expression never shown
    assert metrics.fr_syn(mime, speaker) == 49.0  # official: the NaN lags win the argmax
    assert metrics.fr_syn(mime, speaker, corrected=True) == 0.0  # corrected: that dimension is left out


def test_frsyn_official_uses_only_the_first_prediction() -> None:
    rng = np.random.default_rng(8)
    speaker = rng.random((2, 80, 25))
    pred = np.stack([np.roll(speaker, lag, axis=1) for lag in (0, 10, 20)], axis=1)
    assert metrics.fr_syn(pred, speaker) == 0.0
    assert metrics.fr_syn(pred, speaker, corrected=True) == 10.0


def test_frsyn_partly_constant_dimension_gives_the_first_nan_lag() -> None:
    rng = np.random.default_rng(9)
    speaker = rng.random((1, 80, 25))
    pred = speaker[:, None].copy()  # in sync: true offset 0
    pred[0, 0, 30:, 0] = 1.0  # constant for the last 50 frames: at lags >= 30 the window pred[lag:] is constant
    assert metrics.fr_syn(pred, speaker) == 30.0
    assert metrics.fr_syn(pred, speaker, corrected=True) == 0.0


def test_identical_predictions_have_no_diversity_and_perfect_ones_no_distance() -> None:
    rng = np.random.default_rng(10)
    listener = rng.random((4, 60, 25))
    pred = np.repeat(listener[:, None], 10, axis=1)
    assert metrics.fr_div(pred) == pytest.approx(0.0, abs=1e-12)
    assert metrics.fr_dist(pred, listener, np.eye(4)) == pytest.approx(0.0, abs=1e-5)
    assert metrics.fr_dvs(pred) > 0.1  # different speakers, different reactions
    same_for_all = np.repeat(pred[:1], 4, axis=0)
    assert metrics.fr_dvs(same_for_all) == pytest.approx(0.0, abs=1e-12)
    assert metrics.fr_var(np.full((2, 3, 60, 25), 0.7)) == pytest.approx(0.0, abs=1e-12)


def test_fr_dist_sums_over_predictions_unless_corrected() -> None:
    pred, listener, _, neighbours = make_case(0, quirky=False)
    official = metrics.fr_dist(pred, listener, neighbours)
    assert metrics.fr_dist(pred, listener, neighbours, corrected=True) == pytest.approx(official / 10, rel=1e-12)


def test_diversity_metrics_scale_like_squared_distances() -> None:
    rng = np.random.default_rng(11)
    pred = rng.random((3, 4, 60, 25))
    assert metrics.fr_div(2 * pred) == pytest.approx(4 * metrics.fr_div(pred), rel=1e-9)
    assert metrics.fr_dvs(2 * pred) == pytest.approx(4 * metrics.fr_dvs(pred), rel=1e-9)
    assert metrics.fr_var(pred + 5.0) == pytest.approx(metrics.fr_var(pred), rel=1e-9)


def test_process_pool_gives_the_same_frdist() -> None:
    pred, listener, _, neighbours = make_case(1, quirky=True)
    one = metrics.fr_dist(pred, listener, neighbours, workers=1)
    assert metrics.fr_dist(pred, listener, neighbours, workers=2) == one


def bad_inputs() -> list[tuple[str, dict[str, NDArray], str]]:
    pred, listener, speaker, neighbours = make_case(0, quirky=False)
    nan = listener.copy()
    nan[2, 5, 7] = np.nan
    inf = pred.copy()
    inf[0, 1, 2, 3] = np.inf
    two = neighbours.copy()
    two[0, 1] = 2
    empty_row = neighbours.copy()
    empty_row[4] = 0
    return [
        ("pred not 4-D", {"pred": pred[0]}, "pred: expected a 4-D array"),
        ("T mismatch", {"listener": listener[:, :50]}, "listener: expected shape"),
        ("dim mismatch", {"speaker": speaker[..., :24]}, "speaker: expected shape"),
        ("one prediction", {"pred": pred[:, :1]}, "at least 2"),
        ("NaN", {"listener": nan}, "listener: value at index (2, 5, 7) is NaN"),
        ("inf", {"pred": inf}, "pred: value at index (0, 1, 2, 3) is inf"),
        ("neighbours size", {"neighbours": neighbours[:5, :5]}, "neighbours: expected shape (6, 6)"),
        ("neighbours not 0/1", {"neighbours": two}, "neighbours: values must be 0 or 1, found [2]"),
        ("neighbours empty row", {"neighbours": empty_row}, "neighbours: row 4 marks no appropriate listener"),
        ("text", {"pred": pred.astype(str)}, "pred: expected a numeric array"),
    ]


@pytest.mark.parametrize(("what", "change", "message"), bad_inputs(), ids=[case[0] for case in bad_inputs()])
def test_bad_inputs_raise_a_value_error_naming_the_array(what: str, change: dict[str, NDArray], message: str) -> None:
    pred, listener, speaker, neighbours = make_case(0, quirky=False)
    arrays = {"pred": pred, "listener": listener, "speaker": speaker, "neighbours": neighbours, **change}
    with pytest.raises(MetricInputError, match=re.escape(message)) as info:
        compute_all(**arrays)
    assert isinstance(info.value, ValueError)


def test_single_metrics_check_their_own_needs() -> None:
    pred, listener, speaker, _ = make_case(0, quirky=False)
    with pytest.raises(MetricInputError, match="N >= 2"):
        metrics.fr_dvs(pred[:1])
    with pytest.raises(MetricInputError, match="T >= 51"):
        metrics.fr_syn(pred[:, :, :40], speaker[:, :40])
    with pytest.raises(MetricInputError, match="25 REACT emotion columns"):
        metrics.fr_dist(pred[..., :24], listener[..., :24], np.eye(6))
    assert metrics.fr_corr(pred[..., :5], listener[..., :5], np.eye(6)) > 0  # CCC works on any width


# --- the CLI ---------------------------------------------------------------------------------------------


def save_case(tmp_path: Path, case: Case) -> list[str]:
    args = []
    for name, array in zip(("pred", "listener", "speaker", "neighbours"), case, strict=True):
        np.save(tmp_path / f"{name}.npy", array)
        args += [f"--{name}", str(tmp_path / f"{name}.npy")]
    return args


def test_cli_prints_the_official_values_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = save_case(tmp_path, make_case(1, quirky=True))
    assert cli.main(["metrics", *files, "--json", "--no-progress", "--workers", "1"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert list(scores) == list(METRIC_NAMES)
    for name, value in OFFICIAL["quirky"].items():
        assert scores[name] == pytest.approx(value, abs=1e-4), name


def test_cli_table_and_corrected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = save_case(tmp_path, make_case(0, quirky=False))
    assert cli.main(["metrics", *files, "--corrected", "--no-progress", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "corrected" in out
    frsyn = next(line for line in out.splitlines() if line.startswith("FRSyn"))
    assert float(frsyn.split()[1]) == pytest.approx(OFFICIAL_TLCC_ALL_PREDICTIONS_RANDOM, abs=1e-4)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, listener, speaker, neighbours = make_case(0, quirky=False)
    files = save_case(tmp_path, (pred, listener[:, :50], speaker, neighbours))
    assert cli.main(["metrics", *files, "--json", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "listener: expected shape" in err


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = save_case(tmp_path, make_case(0, quirky=False))
    (tmp_path / "speaker.npy").unlink()
    assert cli.main(["metrics", *files, "--json"]) == 2
    assert "--speaker: no such file" in capsys.readouterr().err


def test_appropriate_reactions_diversity_and_coverage():
    from trainer.metrics import appropriate_fr_div, coverage

    rng = np.random.default_rng(0)
    t = 60
    a, b = rng.standard_normal((t, 25)), rng.standard_normal((t, 25))
    listener = np.stack([a, b, a])  # samples 0 and 1 are appropriate for each other; sample 2 alone
    neighbours = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    expected = np.mean((a - b) ** 2)  # the FRDiv formula over two reactions: 2·||a-b||² / (2·1·T·D)
    assert appropriate_fr_div(listener, neighbours) == pytest.approx((2 * expected + 0.0) / 3)
    pair = listener[:2], neighbours[:2, :2]
    both = np.stack([np.stack([a + 0.01, b + 0.01])] * 2)  # each speaker's two predictions cover a and b
    crowded = np.stack([np.stack([a + 0.01, a - 0.01])] * 2)  # both imitate a
    spread, narrow = coverage(both, *pair), coverage(crowded, *pair)
    assert spread["coverage"] == pytest.approx(spread["precision"], abs=0.01) and spread["coverage"] > 0.99
    assert narrow["precision"] > 0.99 and narrow["coverage"] < 0.6  # b is never matched
