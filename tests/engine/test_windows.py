import numpy as np
import pytest

from engine import windows as W


@pytest.mark.parametrize(("frames", "window", "hop"), [(100, 48, 8), (101, 48, 8), (7, 48, 8), (96, 48, 47)])
def test_plan_covers_every_frame_once(frames, window, hop):
    plans = W.plan_windows(frames, window, hop)
    new = np.concatenate([np.arange(p.first_new, p.end + 1) for p in plans])
    assert np.array_equal(new, np.arange(frames))
    assert all(p.hop <= hop for p in plans)


@pytest.mark.parametrize("hop", [0, 8, 9])
def test_a_hop_that_leaves_no_emitted_frame_in_the_window_is_a_clear_error(hop):
    # hop = window passed plan_windows before, and generate_windows then joined to the window's own last frame
    with pytest.raises(ValueError, match=rf"hop={hop}: must be between 1 and 7 frames"):
        W.plan_windows(10, 8, hop)


def test_cut_window_pads_before_the_stream_start():
    seq = np.arange(10, dtype=np.float32).reshape(1, 10, 1)
    plan = W.WindowPlan(end=2, window=5, hop=1)
    assert W.cut_window(seq, plan, np.array([-1.0], np.float32))[0, :, 0].tolist() == [-1, -1, 0, 1, 2]


def test_join_at_seam_removes_the_step_and_fades():
    new = np.zeros((1, 8, 2), np.float32)
    joined = W.join_at_seam(
        new, previous=np.ones((1, 2), np.float32), regenerated_previous=np.zeros((1, 2), np.float32)
    )
    assert joined[0, 0, 0] == pytest.approx(np.exp(-1 / 4))
    assert np.all(np.diff(joined[0, :, 0]) < 0)


def test_generate_windows_hands_emitted_frames_back_and_is_seeded():
    seen = []

    def run_window(audio, face, present, known, known_mask, noise):
        seen.append((known.copy(), known_mask.copy()))
        # a "model" that continues known frames with a ramp and adds the noise's mean
        return np.repeat(audio[..., :1], 3, axis=-1) + noise.mean()

    audio = np.tile(np.arange(30, dtype=np.float32)[None, :, None], (2, 1, 57))
    face = np.zeros((2, 30, 58), np.float32)
    kwargs = dict(
        window=12, hop=4, latent_shape=(3, 2), listener_dim=3, seed=5, neutral_listener=np.zeros(3, np.float32)
    )
    out = W.generate_windows(run_window, audio, face, np.ones((2, 2), np.float32), **kwargs)
    assert out.shape == (2, 30, 3)
    known, mask = seen[3]  # the 4th window ends at frame 15: frames 4..11 were emitted before it
    assert mask[0].tolist() == [0] * 0 + [1] * 8 + [0] * 4
    assert np.array_equal(known[0, :8], out[0, 4:12])
    again = W.generate_windows(run_window, audio, face, np.ones((2, 2), np.float32), **kwargs)
    assert np.array_equal(out, again)


def test_the_temperature_scales_every_windows_noise_and_zero_makes_every_seed_the_same_listener():
    def run_window(audio, face, present, known, known_mask, noise):
        return np.repeat(audio[..., :1], 3, axis=-1) + noise.reshape(noise.shape[0], 1, -1)[..., :3].mean(
            -1, keepdims=1
        )

    audio = np.tile(np.arange(20, dtype=np.float32)[None, :, None], (1, 1, 57))
    args = (run_window, audio, np.zeros((1, 20, 58), np.float32), np.ones((1, 2), np.float32))
    kwargs = dict(window=8, hop=4, latent_shape=(2, 3), listener_dim=3, neutral_listener=np.zeros(3, np.float32))
    base = W.window_noise(5, 2, 1, (2, 3))
    np.testing.assert_array_equal(W.window_noise(5, 2, 1, (2, 3), 0.5), 0.5 * base)
    cold = [W.generate_windows(*args, seed=s, temperature=0.0, **kwargs) for s in (1, 2)]
    warm = [W.generate_windows(*args, seed=s, temperature=1.0, **kwargs) for s in (1, 2)]
    np.testing.assert_array_equal(cold[0], cold[1])
    assert np.abs(warm[0] - warm[1]).max() > 0.1


@pytest.mark.parametrize("temperature", [-0.1, 1.6, float("nan"), float("inf")])
def test_a_temperature_out_of_range_is_refused_with_the_range(temperature):
    with pytest.raises(ValueError, match=r"temperature .*: use 0 to 1.5"):
        W.check_temperature(temperature)


def test_a_window_in_which_the_face_was_never_found_marks_the_face_absent():
    found = np.zeros((2, 30), bool)
    found[0, 10] = True  # sample 0: one frame with a face; sample 1: none at all
    seen = []

    def run_window(audio, face, present, known, known_mask, noise):
        seen.append(present.copy())
        return np.zeros((2, audio.shape[1], 3), np.float32)

    audio, face = np.zeros((2, 30, 57), np.float32), np.zeros((2, 30, 58), np.float32)
    present = np.array([[1, 1], [0, 1]], np.float32)  # sample 1 is video-only
    W.generate_windows(run_window, audio, face, present, window=8, hop=4, latent_shape=(2, 2), listener_dim=3,
                       seed=0, neutral_listener=np.zeros(3, np.float32), face_found=found)  # fmt: skip
    ends = [p.end for p in W.plan_windows(30, 8, 4)]
    for end, p in zip(ends, seen, strict=True):
        assert p[0].tolist() == [1, float(end - 7 <= 10 <= end)]  # the windows holding frame 10
        assert p[1].tolist() == [0, 0]  # audio stays as given; the face is never found
    assert present.tolist() == [[1, 1], [0, 1]]  # the caller's array is not modified


@pytest.mark.parametrize(
    ("window", "hop", "downsample", "reach"), [(16, 4, 4, 0), (16, 8, 4, 0), (48, 3, 4, 0), (16, 6, 4, 2)]
)
def test_dependency_horizon_is_the_end_of_each_frames_latent_token(window, hop, downsample, reach):
    plan = W.WindowPlan(end=100, window=window, hop=hop)
    horizon = W.dependency_horizon(plan, downsample, reach)
    rows = np.arange(window)
    want = np.minimum(plan.start + (rows // downsample) * downsample + downsample - 1 + reach, plan.end)
    assert horizon.tolist() == want.tolist()
    assert (horizon >= plan.start + rows).all() and horizon.max() == plan.end


def test_the_model_depends_on_no_speaker_frame_past_the_horizon():
    # the claim behind every avatar frame's probe index: change the speaker's input at frame s, and listener
    # frames whose horizon is before s do not move, while some frame at or after it does
    import torch

    from tests.conftest import TINY
    from trainer.generate import torch_window_fn
    from trainer.model import ReactDiff

    torch.manual_seed(0)
    model = ReactDiff(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # no zero-initialised path (adaLN) left silent
    run = torch_window_fn(model, steps=2, sampler="ddim", guidance=2.0)
    rng = np.random.default_rng(0)
    w = TINY.window
    audio, face = rng.standard_normal((1, w, 57)).astype(np.float32), rng.standard_normal((1, w, 58)).astype(np.float32)
    known_mask = (np.arange(w) < w - TINY.hop)[None].astype(np.float32)
    known = rng.standard_normal((1, w, 83)).astype(np.float32) * known_mask[..., None]
    noise = rng.standard_normal((1, w // TINY.downsample, TINY.latent_channels)).astype(np.float32)
    present = np.ones((1, 2), np.float32)
    base = run(audio, face, present, known, known_mask, noise)[0]
    horizon = W.dependency_horizon(W.WindowPlan(end=w - 1, window=w, hop=TINY.hop), TINY.downsample)
    for s in (3, 6, 9, 13):
        moved_audio, moved_face = audio.copy(), face.copy()
        moved_audio[0, s] += 3.0
        moved_face[0, s] += 3.0
        out = run(moved_audio, moved_face, present, known, known_mask, noise)[0]
        change = np.abs(out - base).max(axis=1)  # (W,)
        assert change[horizon < s].max(initial=0.0) < 1e-5, s
        assert change[horizon >= s].max() > 1e-3, s
