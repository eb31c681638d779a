"""The REACT challenge metrics, computed as the official challenge code computes them, or corrected.

    from trainer.metrics import compute_all
    scores = compute_all(pred, listener, speaker, neighbours)        # {"FRCorr": ..., "FRSyn": ...}
    reactdiff-trainer metrics --pred P.npy --listener L.npy --speaker S.npy --neighbours N.npy --json

Arrays (all on REACT's 25 emotion columns, see `renderer.face.EMOTION_NAMES`):

    pred        (N, S, T, D)  S generated reactions per sample (S = 10 in the challenge)
    listener    (N, T, D)     the real listener of each sample
    speaker     (N, T, D)     the speaker of each sample (only FRSyn uses it)
    neighbours  (N, N)        0/1; row k, column j = 1: listener j's reaction is appropriate for sample k

By default every number matches the official code (REACT 2023/2024 baselines, `metric/*.py`) to about 1e-6,
quirks included; each function's docstring says which quirk it keeps and what `corrected=True` changes.
All arithmetic is float64.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import ArrayLike, NDArray
from tqdm import tqdm

from renderer.face import AUS, EMOTION_DIM, EXPRESSIONS, VALENCE_AROUSAL

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = ("FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn")
SYN_MAX_LAG = 49  # frames; the official synchrony search spans lags -49..49 (2 s at 25 fps)
CCC_EPS = 1e-8  # the official CCC adds this to its denominator
# FRDist adds one DTW per emotion group, each divided by its width: AUs / 15, valence+arousal / 1, expressions / 8.
DTW_GROUPS: tuple[tuple[slice, float], ...] = ((AUS, 1.0 / 15), (VALENCE_AROUSAL, 1.0), (EXPRESSIONS, 1.0 / 8))
_DTW_CHUNK_CELLS = 1 << 24  # cost-matrix cells per DTW batch (128 MiB of float64)

F64 = NDArray[np.float64]


class MetricInputError(ValueError):
    """An array handed to the metrics has the wrong shape, values or type; the message names it."""


# --- input checks ---------------------------------------------------------------------------------------


def _as_array(array: ArrayLike, name: str, ndim: int) -> NDArray:
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf":
        raise MetricInputError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise MetricInputError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise MetricInputError(f"{name}: the array is empty (shape {arr.shape})")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            kind = "NaN" if np.isnan(arr[where]) else "inf"
            raise MetricInputError(f"{name}: value at index {where} is {kind} ({int(bad.sum())} non-finite values)")
    return arr


def check_pred(pred: ArrayLike, *, min_samples: int = 1) -> NDArray:
    """Check `pred` is a finite (N, S, T, D) array with at least `min_samples` predictions per sample."""
    arr = _as_array(pred, "pred", 4)
    if arr.shape[1] < min_samples:
        raise MetricInputError(
            f"pred: shape {arr.shape} holds {arr.shape[1]} prediction(s) per sample; "
            f"this metric needs at least {min_samples} (axis 1 of (N, S, T, D))"
        )
    return arr


def check_sequences(array: ArrayLike, name: str, pred: NDArray) -> NDArray:
    """Check a listener or speaker array is finite (N, T, D) with N, T, D matching `pred` (N, S, T, D)."""
    arr = _as_array(array, name, 3)
    n, _, t, d = pred.shape
    if arr.shape != (n, t, d):
        raise MetricInputError(
            f"{name}: expected shape (N, T, D) = {(n, t, d)} to match pred {pred.shape}, got {arr.shape}"
        )
    return arr


def check_neighbours(neighbours: ArrayLike, n: int) -> NDArray[np.bool_]:
    """Check the (N, N) appropriateness matrix holds only 0/1 and gives every sample at least one listener."""
    arr = _as_array(neighbours, "neighbours", 2)
    if arr.shape != (n, n):
        raise MetricInputError(f"neighbours: expected shape ({n}, {n}) for {n} samples, got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise MetricInputError(f"neighbours: values must be 0 or 1, found {bad.tolist()}")
    mask = arr.astype(bool)
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise MetricInputError(
            f"neighbours: row {int(empty[0])} marks no appropriate listener ({empty.size} such rows)"
        )
    return mask


# --- CCC ------------------------------------------------------------------------------------------------


def _ccc_matrix(preds: F64, targets: F64, *, corrected: bool) -> F64:
    """CCC of every prediction against every target, averaged over dimensions: (S, T, D), (K, T, D) -> (S, K)."""
    t = preds.shape[1]
    mu_p, mu_q = preds.mean(axis=1), targets.mean(axis=1)  # (S, D), (K, D)
    p, q = preds - mu_p[:, None], targets - mu_q[:, None]
    cov = np.matmul(p.transpose(2, 0, 1), q.transpose(2, 1, 0)).transpose(1, 2, 0) / t  # (S, K, D), population
    var_p, var_q = (p * p).mean(axis=1), (q * q).mean(axis=1)
    denom = var_p[:, None] + var_q[None] + (mu_p[:, None] - mu_q[None]) ** 2  # (S, K, D)
    if not corrected:
        return (2.0 * cov / (denom + CCC_EPS)).mean(axis=-1)
    varies = var_q > 0  # (K, D): dimensions where the target is constant carry no information
    per_dim = np.where(varies[None], 2.0 * cov / np.where(denom > 0, denom, 1.0), 0.0)
    return per_dim.sum(axis=-1) / np.maximum(varies.sum(axis=-1), 1)[None]


def ccc(pred: ArrayLike, target: ArrayLike, *, corrected: bool = False) -> float:
    """Lin's concordance correlation coefficient of two (T, D) sequences, averaged over the D dimensions.

    Official: 2·cov / (var_pred + var_target + (mean_pred - mean_target)² + 1e-8) per dimension with population
    (co)variances; a dimension where either sequence is constant scores 0 (the official Pearson r is NaN there,
    turned into 0) and still counts in the mean, so a constant target dimension pulls the score towards 0 even
    for a perfect prediction. Corrected: dimensions where the target is constant are left out of the mean
    (score 0 if the target is constant everywhere) and there is no 1e-8.
    """
    p, q = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.ndim != 2 or p.shape != q.shape:
        raise MetricInputError(f"ccc: expected two (T, D) arrays of the same shape, got {p.shape} and {q.shape}")
    return float(_ccc_matrix(p[None], q[None], corrected=corrected)[0, 0])


# --- DTW ------------------------------------------------------------------------------------------------


def _dtw_accumulate(cost: F64) -> F64:
    """Unconstrained DTW over a batch of cost matrices (B, n, m): the cheapest summed cost of a path, (B,).

    Cells on one anti-diagonal i + j = d depend only on the two previous anti-diagonals, so each step is a few
    vectorised operations over (B, cells on the diagonal). `prev1`/`prev2` hold diagonals d-1/d-2 indexed by
    row i + 1; index 0 and rows outside a diagonal stay +inf.
    """
    b, n, m = cost.shape
    flat = cost.reshape(b, n * m)
    item = flat.strides[1]
    prev2, prev1 = np.full((b, n + 1), np.inf), np.full((b, n + 1), np.inf)
    prev1[:, 1] = cost[:, 0, 0]
    best = np.empty((b, n))
    for d in range(1, n + m - 1):
        lo, hi = max(0, d - m + 1), min(d, n - 1)  # rows on this diagonal
        size = hi - lo + 1
        # cost[:, i, d - i] for i in lo..hi sits at flat offset d + i·(m - 1)
        diag = as_strided(flat[:, d + lo * (m - 1) :], shape=(b, size), strides=(flat.strides[0], (m - 1) * item))
        out = best[:, :size]
        np.minimum(prev1[:, lo : hi + 1], prev1[:, lo + 1 : hi + 2], out=out)  # from (i-1, j) and (i, j-1)
        np.minimum(out, prev2[:, lo : hi + 1], out=out)  # from (i-1, j-1)
        np.add(out, diag, out=prev2[:, lo + 1 : hi + 2])  # diagonal d overwrites d-2's buffer
        prev2, prev1 = prev1, prev2
    return prev1[:, n].copy()


def _dtw_batch(x: F64, y: F64) -> F64:
    """tslearn-style DTW of each pair: x (B, n, D), y (B, m, D) -> (B,) sqrt of the summed squared distances."""
    b, n, _ = x.shape
    m = y.shape[1]
    out = np.empty(b)
    step = min(b, max(1, _DTW_CHUNK_CELLS // (n * m)))
    buffer = np.empty((step, n, m))  # reused: fresh 100 MB arrays per chunk cost page faults
    y_t = np.ascontiguousarray(y.transpose(0, 2, 1))  # (B, D, m): matmul is much slower on a transposed view
    for start in range(0, b, step):
        xs, ys = x[start : start + step], y[start : start + step]
        # squared distances |x|² + |y|² - 2 x·y, built in place (b', n, m); rounding can dip below 0
        cost = np.matmul(xs, y_t[start : start + step], out=buffer[: len(xs)])
        cost *= -2.0
        cost += (xs * xs).sum(-1)[:, :, None]
        cost += (ys * ys).sum(-1)[:, None, :]
        np.maximum(cost, 0.0, out=cost)
        out[start : start + step] = np.sqrt(_dtw_accumulate(cost))
    return out


def dtw(x: ArrayLike, y: ArrayLike) -> float:
    """Dynamic time warping distance between (n, D) and (m, D) sequences, as `tslearn.metrics.dtw` defines it.

    Unconstrained warping path from (0, 0) to (n-1, m-1) with steps (1, 0), (0, 1), (1, 1); the result is the
    square root of the smallest sum of squared Euclidean frame distances along a path.
    """
    a, c = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim == 1:
        a, c = a[:, None], c.reshape(-1, 1)
    if a.ndim != 2 or c.ndim != 2 or a.shape[1] != c.shape[1] or 0 in a.shape or 0 in c.shape:
        raise MetricInputError(f"dtw: expected (n, D) and (m, D) sequences, got {a.shape} and {c.shape}")
    return float(_dtw_batch(a[None], c[None])[0])


def _emotion_dtw_matrix(preds: F64, targets: F64) -> F64:
    """The official FRDist cost of every prediction against every target: (S, T, 25), (K, T, 25) -> (S, K)."""
    s, k = preds.shape[0], targets.shape[0]
    total = np.zeros(s * k)
    for cols, weight in DTW_GROUPS:
        x = np.repeat(preds[:, :, cols], k, axis=0)  # pair (i, j) at row i·K + j
        y = np.tile(targets[:, :, cols], (s, 1, 1))
        total += weight * _dtw_batch(x, y)
    return total.reshape(s, k)


# --- appropriateness: FRCorr and FRDist -----------------------------------------------------------------


def _best_over_neighbours(scores: F64, *, highest: bool, corrected: bool) -> float:
    """Per prediction the best score over appropriate listeners (S, K) -> summed (official) or averaged."""
    best = scores.max(axis=1) if highest else scores.min(axis=1)
    return float(best.mean() if corrected else best.sum())


def _corr_row(pred_k: NDArray, targets: NDArray, corrected: bool) -> float:
    scores = _ccc_matrix(pred_k.astype(np.float64), targets.astype(np.float64), corrected=corrected)
    return _best_over_neighbours(scores, highest=True, corrected=corrected)


def _dist_row(task: tuple[NDArray, NDArray, bool]) -> float:
    pred_k, targets, corrected = task
    scores = _emotion_dtw_matrix(pred_k.astype(np.float64), targets.astype(np.float64))
    return _best_over_neighbours(scores, highest=False, corrected=corrected)


def _fr_corr(pred: NDArray, listener: NDArray, mask: NDArray[np.bool_], corrected: bool, progress: bool) -> float:
    rows = tqdm(range(pred.shape[0]), desc="FRCorr", unit="sample", disable=not progress, leave=False)
    return float(np.mean([_corr_row(pred[k], listener[mask[k]], corrected) for k in rows]))


def _fr_dist(
    pred: NDArray, listener: NDArray, mask: NDArray[np.bool_], corrected: bool, workers: int, progress: bool
) -> float:
    n = pred.shape[0]
    tasks: Iterator[tuple[NDArray, NDArray, bool]] = ((pred[k], listener[mask[k]], corrected) for k in range(n))
    bar = tqdm(total=n, desc="FRDist (DTW)", unit="sample", disable=not progress, leave=False)
    rows: list[float] = []
    with contextlib.ExitStack() as stack:
        if workers <= 1:
            results: Iterator[float] = map(_dist_row, tasks)
        else:
            # spawn: never fork a process that may hold threads; map() keeps sample order, so the mean is the same
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers, mp_context=context))
            results = pool.map(_dist_row, tasks)
        for value in results:
            rows.append(value)
            bar.update(1)
    bar.close()
    return float(np.mean(rows))


def fr_corr(
    pred: ArrayLike, listener: ArrayLike, neighbours: ArrayLike, *, corrected: bool = False, progress: bool = False
) -> float:
    """FRCorr (appropriateness by correlation): best CCC against the appropriate listeners, higher is better.

    For sample k and each of its S predictions: the highest `ccc` against every listener j with
    neighbours[k, j] = 1. Official quirk: these S maxima are **summed** (not averaged), then averaged over
    samples, so the score ranges up to S (10) and grows with the number of predictions; constant dimensions
    count as CCC 0 (see `ccc`). Corrected: the S maxima are averaged (range [-1, 1]) and `ccc(corrected=True)`.
    """
    p = check_pred(pred)
    lis = check_sequences(listener, "listener", p)
    return _fr_corr(p, lis, check_neighbours(neighbours, p.shape[0]), corrected, progress)


def fr_dist(
    pred: ArrayLike,
    listener: ArrayLike,
    neighbours: ArrayLike,
    *,
    corrected: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> float:
    """FRDist (appropriateness by distance): smallest DTW cost to the appropriate listeners, lower is better.

    The cost of a prediction against a listener is dtw(AU columns 0-14)/15 + dtw(valence, arousal) +
    dtw(expression columns 17-24)/8, each `dtw` as tslearn computes it (unconstrained, square root of the
    summed squared costs along the path); D must be 25. Official quirk: the S per-prediction minima are
    **summed**, then averaged over samples. Corrected: they are averaged. `workers` > 1 runs samples in a
    process pool (spawned, so a calling script needs the usual `if __name__ == "__main__":` guard); the result
    does not depend on it.
    """
    p = check_pred(pred)
    _require_emotion_dim(p)
    lis = check_sequences(listener, "listener", p)
    return _fr_dist(p, lis, check_neighbours(neighbours, p.shape[0]), corrected, workers, progress)


def _require_emotion_dim(pred: NDArray) -> None:
    if pred.shape[-1] != EMOTION_DIM:
        raise MetricInputError(
            f"pred: FRDist needs the {EMOTION_DIM} REACT emotion columns in the last axis, got shape {pred.shape}"
        )


# --- diversity: FRDiv, FRDvs, FRVar ---------------------------------------------------------------------


def _pairwise_sq_sum(rows: F64) -> float:
    """Sum over all ordered pairs (a, b) of ||rows[a] - rows[b]||² for (R, F) rows: 2R·Σ||row - mean||²."""
    centred = rows - rows.mean(axis=0)
    return float(2.0 * rows.shape[0] * np.einsum("rf,rf->", centred, centred))


def _fr_div(pred: NDArray) -> float:
    n, s, t, d = pred.shape
    per_sample = [_pairwise_sq_sum(pred[k].reshape(s, -1).astype(np.float64)) for k in range(n)]
    return float(np.mean(per_sample) / (s * (s - 1) * t * d))


def _fr_dvs(pred: NDArray) -> float:
    n, s, t, d = pred.shape
    total = sum(_pairwise_sq_sum(pred[:, i].reshape(n, -1).astype(np.float64)) for i in range(s))
    return float(total / (n * (n - 1) * s) / (t * d))


def _fr_var(pred: NDArray) -> float:
    per_sample = [pred[k].astype(np.float64).var(axis=1, ddof=1).mean() for k in range(pred.shape[0])]
    return float(np.mean(per_sample))


def fr_div(pred: ArrayLike) -> float:
    """FRDiv (diversity among one speaker's reactions; the official "S-MSE"): higher is more diverse.

    Per sample, the squared Euclidean distances between all ordered pairs of its S flattened (T·D)
    predictions, summed and divided by S·(S-1)·T·D; averaged over samples. Needs S >= 2.
    """
    return _fr_div(check_pred(pred, min_samples=2))


def fr_dvs(pred: ArrayLike) -> float:
    """FRDvs (diversity across speakers): do reactions to different speakers differ? Higher is more diverse.

    For each prediction index i, the squared distances between the flattened predictions i of all ordered
    pairs of samples, summed over i and divided by N·(N-1)·S and by T·D. Needs N >= 2.
    """
    p = check_pred(pred)
    if p.shape[0] < 2:
        raise MetricInputError(f"pred: FRDvs compares samples and needs N >= 2 (axis 0), got shape {p.shape}")
    return _fr_dvs(p)


def fr_var(pred: ArrayLike) -> float:
    """FRVar (movement within a reaction): unbiased variance over time (T - 1 denominator), averaged over all."""
    p = check_pred(pred)
    if p.shape[2] < 2:
        raise MetricInputError(f"pred: FRVar needs T >= 2 frames (axis 2), got shape {p.shape}")
    return _fr_var(p)


# --- synchrony: FRSyn -----------------------------------------------------------------------------------


def _constant_runs(x: NDArray) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Lengths of the longest constant prefix and suffix in time of (B, T, D) data: two (B, D) arrays."""
    head = np.cumprod(x == x[:, :1], axis=1).sum(axis=1)
    tail = np.cumprod(x[:, ::-1] == x[:, -1:], axis=1).sum(axis=1)
    return head, tail


def _lagged_pearson(x: NDArray, y: NDArray, max_lag: int) -> F64:
    """Pearson r per lag and dimension between x (B, T, D) and y (B, T, D): (B, 2·max_lag + 1, D).

    Lag L > 0 pairs x[L:] with y[:-L] (x follows y by L frames), L < 0 pairs x[:L] with y[-L:]. A window where
    either sequence is constant gives NaN, as `np.corrcoef` does.
    """
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    xf, yf = xf - xf.mean(axis=1, keepdims=True), yf - yf.mean(axis=1, keepdims=True)  # against cancellation
    t = x.shape[1]
    zero = np.zeros_like(xf[:, :1])
    cx, cy = np.concatenate([zero, xf.cumsum(1)], 1), np.concatenate([zero, yf.cumsum(1)], 1)  # (B, T+1, D)
    cxx, cyy = np.concatenate([zero, (xf * xf).cumsum(1)], 1), np.concatenate([zero, (yf * yf).cumsum(1)], 1)
    x_head, x_tail = _constant_runs(x)  # (B, D)
    y_head, y_tail = _constant_runs(y)
    out = np.empty((x.shape[0], 2 * max_lag + 1, x.shape[2]))
    for idx, lag in enumerate(range(-max_lag, max_lag + 1)):
        a, size = max(lag, 0), t - abs(lag)  # x window starts at a, y window at b
        b = a - lag
        sxy = np.einsum("btd,btd->bd", xf[:, a : a + size], yf[:, b : b + size])
        sx, sy = cx[:, a + size] - cx[:, a], cy[:, b + size] - cy[:, b]
        sxx, syy = cxx[:, a + size] - cxx[:, a], cyy[:, b + size] - cyy[:, b]
        var_x, var_y = np.maximum(sxx - sx * sx / size, 0.0), np.maximum(syy - sy * sy / size, 0.0)
        r = np.clip((sxy - sx * sy / size) / np.sqrt(np.where(var_x * var_y > 0, var_x * var_y, 1.0)), -1.0, 1.0)
        x_const = (x_head >= size) if a == 0 else (x_tail >= size)
        y_const = (y_head >= size) if b == 0 else (y_tail >= size)
        out[:, idx] = np.where(x_const | y_const, np.nan, r)
    return out


def _sync_offsets(r: F64, max_lag: int, corrected: bool) -> NDArray[np.int64]:
    """|offset| per row from lagged correlations (B, lags, D)."""
    if not corrected:
        mean = r.mean(axis=-1)  # any NaN dimension makes the lag NaN
        nan = np.isnan(mean)
        # torch.argmax (the official code) treats NaN as the maximum: the first NaN lag wins
        idx = np.where(nan.any(axis=1), nan.argmax(axis=1), np.where(nan, -np.inf, mean).argmax(axis=1))
        return np.abs(max_lag - idx)
    valid = ~np.isnan(r)
    counts = valid.sum(axis=-1)
    mean = np.where(counts > 0, np.where(valid, r, 0.0).sum(axis=-1) / np.maximum(counts, 1), -np.inf)
    idx = mean.argmax(axis=1)
    return np.where(counts.any(axis=1), np.abs(max_lag - idx), max_lag)


def _fr_syn(pred: NDArray, speaker: NDArray, corrected: bool, max_lag: int, progress: bool) -> float:
    n, s, t, d = pred.shape
    used = s if corrected else 1
    chunk = max(1, (1 << 22) // (used * t * d))  # samples per batch: about 4M values
    offsets = []
    with tqdm(total=n, desc="FRSyn", unit="sample", disable=not progress, leave=False) as bar:
        for start in range(0, n, chunk):
            x = pred[start : start + chunk, :used]  # (n', S', T, D)
            y = np.broadcast_to(speaker[start : start + chunk, None], x.shape)
            r = _lagged_pearson(x.reshape(-1, t, d), y.reshape(-1, t, d), max_lag)
            offsets.append(_sync_offsets(r, max_lag, corrected))
            bar.update(x.shape[0])
    return float(np.mean(np.concatenate(offsets)))


def fr_syn(
    pred: ArrayLike,
    speaker: ArrayLike,
    *,
    corrected: bool = False,
    max_lag: int = SYN_MAX_LAG,
    progress: bool = False,
) -> float:
    """FRSyn (synchrony, the official "TLCC"): mean |lag| in frames of the best time-lagged correlation with the
    **speaker**; lower means more in step with the speaker.

    For each lag in -max_lag..max_lag, the Pearson r of the overlapping windows of prediction and speaker,
    averaged over dimensions; the offset is max_lag - argmax. Official quirks: only the first of the S
    predictions of each sample is used (the pooled official version returns inside its loop); a dimension that
    is constant within a window makes that lag NaN, and the official `torch.argmax` takes the first NaN lag as
    the maximum, so a constant dimension anywhere gives |offset| = 49 and a partly constant one gives the
    offset of its first NaN lag. Corrected: every prediction counts, and dimensions that are constant in a
    window are left out of that lag's mean; a prediction with no defined lag at all scores max_lag.
    Needs T >= max_lag + 2 so that every window holds two frames.
    """
    p = check_pred(pred)
    spk = check_sequences(speaker, "speaker", p)
    _require_frames_for_lags(p, max_lag)
    return _fr_syn(p, spk, corrected, max_lag, progress)


def _require_frames_for_lags(pred: NDArray, max_lag: int) -> None:
    if max_lag < 0 or pred.shape[2] < max_lag + 2:
        raise MetricInputError(
            f"pred: FRSyn with lags up to {max_lag} frames needs T >= {max_lag + 2} frames (axis 2), "
            f"got shape {pred.shape}"
        )


# --- beyond the challenge: the appropriate reactions' own diversity, and how well samples cover them ------


def appropriate_fr_div(listener: ArrayLike, neighbours: ArrayLike) -> float:
    """FRDiv of the appropriate reactions themselves, the ceiling a model's FRDiv is read against: per sample k,
    the FRDiv formula (`fr_div`) over the listeners j with neighbours[k, j] = 1, then the mean over samples (a
    sample with a single appropriate reaction counts 0: one person is not diverse). listener (N, T, D)."""
    lis = np.asarray(listener, dtype=np.float64)
    if lis.ndim != 3:
        raise MetricInputError(f"listener: expected (N, T, D), got shape {lis.shape}")
    mask = check_neighbours(neighbours, lis.shape[0])
    n, t, d = lis.shape
    rows = []
    for k in range(n):
        chosen = lis[mask[k]].reshape(int(mask[k].sum()), -1)
        s = len(chosen)
        rows.append(0.0 if s < 2 else _pairwise_sq_sum(chosen) / (s * (s - 1) * t * d))
    return float(np.mean(rows))


def coverage(pred: ArrayLike, listener: ArrayLike, neighbours: ArrayLike) -> dict[str, float]:
    """Do a speaker's S samples cover their appropriate reactions, or crowd around one of them?

    "coverage": for each appropriate reaction of each sample, the best `ccc` over the S predictions, averaged;
    "precision": for each prediction, the best `ccc` over the appropriate reactions, averaged (FRCorr's figure,
    averaged instead of summed). Samples that cover the listeners score a coverage near their precision;
    samples that all imitate one listener score a coverage well below it."""
    p = check_pred(pred)
    lis = check_sequences(listener, "listener", p)
    mask = check_neighbours(neighbours, p.shape[0])
    covered, precise = [], []
    for k in range(p.shape[0]):
        scores = _ccc_matrix(p[k].astype(np.float64), lis[mask[k]].astype(np.float64), corrected=False)  # (S, K)
        covered.append(scores.max(axis=0).mean())
        precise.append(scores.max(axis=1).mean())
    return {"coverage": float(np.mean(covered)), "precision": float(np.mean(precise))}


# --- all together ---------------------------------------------------------------------------------------


def compute_all(
    pred: ArrayLike,
    listener: ArrayLike,
    speaker: ArrayLike,
    neighbours: ArrayLike,
    *,
    corrected: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, float]:
    """All six REACT metrics, keyed by `METRIC_NAMES`; shapes and quirks as in the module docstring.

    `corrected` switches FRCorr, FRDist and FRSyn to their corrected variants (FRDiv, FRVar and FRDvs have
    none); `workers` > 1 computes FRDist's DTWs in that many processes; `progress` shows progress bars.
    """
    p = check_pred(pred, min_samples=2)
    _require_emotion_dim(p)
    if p.shape[0] < 2:
        raise MetricInputError(f"pred: FRDvs compares samples and needs N >= 2 (axis 0), got shape {p.shape}")
    _require_frames_for_lags(p, SYN_MAX_LAG)
    lis = check_sequences(listener, "listener", p)
    spk = check_sequences(speaker, "speaker", p)
    mask = check_neighbours(neighbours, p.shape[0])
    log.debug("scoring %d samples x %d predictions x %d frames", *p.shape[:3])
    return {
        "FRCorr": _fr_corr(p, lis, mask, corrected, progress),
        "FRDist": _fr_dist(p, lis, mask, corrected, workers, progress),
        "FRDiv": _fr_div(p),
        "FRVar": _fr_var(p),
        "FRDvs": _fr_dvs(p),
        "FRSyn": _fr_syn(p, spk, corrected, SYN_MAX_LAG, progress),
    }
