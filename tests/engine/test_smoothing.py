import numpy as np
import pytest

from engine.smoothing import (
    OneEuroConfig,
    OneEuroFilter,
    OneEuroParams,
    hold_decay,
    jerk,
    one_euro,
    seam_jerk_ratio,
)
from renderer.face import FACE_INDEX

DIM = 83


def params(min_cutoff=1.0, beta=0.0, d_cutoff=1.0, dim=4):
    return tuple(np.full(dim, v, np.float32) for v in (min_cutoff, beta, d_cutoff))


def test_groups_get_their_own_parameters():
    cfg = OneEuroConfig(
        blendshapes=OneEuroParams(1.0, 2.0), rotation=OneEuroParams(3.0, 4.0),
        translation=OneEuroParams(5.0, 6.0), emotion=OneEuroParams(7.0, 8.0, 9.0),
    )  # fmt: skip
    min_cutoff, beta, d_cutoff = cfg.per_dimension(DIM)
    assert min_cutoff[FACE_INDEX["jawOpen"]] == 1.0 and beta[FACE_INDEX["jawOpen"]] == 2.0
    assert min_cutoff[FACE_INDEX["yaw"]] == 3.0 and min_cutoff[FACE_INDEX["tz"]] == 5.0
    assert min_cutoff[60] == 7.0 and d_cutoff[82] == 9.0 and d_cutoff[0] == 1.0
    with pytest.raises(ValueError, match="at least the 58 face values"):
        cfg.per_dimension(25)


def test_streaming_blocks_equal_the_whole_sequence():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((50, DIM)).astype(np.float32)
    p = OneEuroConfig().per_dimension(DIM)
    whole = one_euro(frames, p)
    smoother = OneEuroFilter(p)
    blocks = np.concatenate([smoother(frames[a:b]) for a, b in [(0, 1), (1, 9), (9, 9), (9, 50)]])
    np.testing.assert_array_equal(blocks, whole)


def test_first_frame_passes_and_constants_stay():
    const = np.tile(np.array([0.3, -1.0, 2.0, 0.0], np.float32), (20, 1))
    np.testing.assert_allclose(one_euro(const, params()), const, atol=1e-6)


def test_jitter_is_removed_on_a_still_signal():
    rng = np.random.default_rng(1)
    noisy = (0.5 + 0.05 * rng.standard_normal((200, 4))).astype(np.float32)
    smooth = one_euro(noisy, params(min_cutoff=1.0, beta=0.0))
    assert smooth[20:].std() < 0.4 * noisy[20:].std()


def test_beta_lets_fast_moves_through_with_less_lag():
    step = np.zeros((30, 4), np.float32)
    step[10:] = 1.0
    slow = one_euro(step, params(min_cutoff=1.0, beta=0.0))
    fast = one_euro(step, params(min_cutoff=1.0, beta=5.0))
    assert fast[12, 0] > slow[12, 0] + 0.2  # two frames after the step
    assert 0.0 < slow[12, 0] < 1.0


def test_bad_parameters_are_clear_errors():
    with pytest.raises(ValueError, match="min_cutoff and d_cutoff must be positive"):
        OneEuroFilter(params(min_cutoff=0.0))
    with pytest.raises(ValueError, match="fps must be positive"):
        OneEuroFilter(params(), fps=0)


def test_hold_decay_continues_where_it_stopped():
    last, target = np.array([1.0, -2.0], np.float32), np.zeros(2, np.float32)
    whole = hold_decay(last, target, 10, tau_frames=5.0)
    parts = np.concatenate(
        [hold_decay(last, target, 4, tau_frames=5.0), hold_decay(last, target, 6, start=5, tau_frames=5.0)]
    )
    np.testing.assert_allclose(parts, whole, rtol=1e-6)
    assert np.all(np.abs(np.diff(whole[:, 0])) > 0) and abs(whole[-1, 0]) < abs(whole[0, 0]) < 1.0
    assert whole[0, 0] == pytest.approx(np.exp(-1 / 5))


def test_jerk_is_the_third_difference():
    cubic = (np.arange(10, dtype=np.float32) ** 3)[:, None]
    np.testing.assert_allclose(jerk(cubic), 6.0)


def test_seam_jerk_ratio_sees_steps_at_seams_only():
    t = np.arange(200)
    smooth = np.stack([np.sin(t / 7.0), np.cos(t / 11.0)], axis=1).astype(np.float32)
    seams = list(range(8, 200, 8))
    assert seam_jerk_ratio(smooth, seams) == pytest.approx(1.0, abs=0.2)
    stepped = smooth + 0.05 * (t // 8)[:, None]  # a step at every seam
    assert seam_jerk_ratio(stepped, seams) > 3.0
    with pytest.raises(ValueError, match="both at and away from seams"):
        seam_jerk_ratio(smooth[:10], [])
