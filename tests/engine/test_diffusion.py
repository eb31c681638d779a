import itertools
import math

import numpy as np
import pytest
import torch

from engine import diffusion as D

SCHEDULE = D.CosineSchedule(1000)
MU, STD = 0.7, 0.3  # a Gaussian "data set": its posterior mean and probability-flow ODE are known exactly


def gaussian_x0(x, t):
    alpha, sigma = SCHEDULE.alpha_sigma(t)
    return MU + alpha * STD**2 / (alpha**2 * STD**2 + sigma**2) * (x - alpha * MU)


def exact_ode_solution(noise):
    alpha, sigma = SCHEDULE.alpha_sigma(SCHEDULE.timesteps - 1)
    x_t = noise  # samplers start from unit noise at the noisiest step
    return MU + STD * (x_t - alpha * MU) / math.sqrt(alpha**2 * STD**2 + sigma**2)


def test_schedule_is_monotone_and_bounded():
    table = SCHEDULE.alpha_sigma_table()
    assert table.shape == (1000, 2)
    assert np.all(np.diff(table[:, 0]) <= 0) and np.all(np.diff(table[:, 1]) >= 0)
    assert table[0, 0] > 0.999 and table[-1, 0] < 0.02
    assert np.allclose(table[:, 0] ** 2 + table[:, 1] ** 2, 1.0, atol=1e-6)
    assert SCHEDULE.sampling_timesteps(4) == [999, 749, 499, 249]
    assert SCHEDULE.sampling_timesteps(1) == [999]


@pytest.mark.parametrize("kind", list(D.SamplerKind))
class TestEverySampler:
    def test_converges_to_the_exact_flow(self, kind):
        noise = np.random.default_rng(0).standard_normal(4000)
        errors = [np.abs(D.get_sampler(kind.value)(gaussian_x0, noise, SCHEDULE, k) - exact_ode_solution(noise)).mean()
                  for k in (2, 4, 8, 20, 50)]  # fmt: skip
        assert all(a > b for a, b in itertools.pairwise(errors))  # more steps, closer to the flow
        assert errors[-1] < 0.02

    @pytest.mark.parametrize("steps", [1, 4])
    def test_keeps_the_data_mean(self, kind, steps):
        noise = np.random.default_rng(1).standard_normal(20000)
        out = D.get_sampler(kind.value)(gaussian_x0, noise, SCHEDULE, steps)
        assert abs(out.mean() - MU) < 0.01

    def test_numpy_and_torch_agree_and_are_deterministic(self, kind):
        noise = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
        sampler = D.get_sampler(kind.value)
        a = sampler(gaussian_x0, noise, SCHEDULE, 4)
        b = sampler(gaussian_x0, torch.from_numpy(noise.copy()), SCHEDULE, 4)
        assert np.allclose(a, b.numpy(), atol=1e-5)
        assert np.array_equal(a, sampler(gaussian_x0, noise, SCHEDULE, 4))


def test_dpm_solver_beats_ddim_at_few_steps():
    noise = np.random.default_rng(3).standard_normal(4000)
    exact = exact_ode_solution(noise)
    for steps in (8, 20):
        err = {
            k: np.abs(D.get_sampler(k)(gaussian_x0, noise, SCHEDULE, steps) - exact).mean() for k in ("ddim", "dpmpp2m")
        }
        assert err["dpmpp2m"] < 0.8 * err["ddim"]


def test_bad_sampler_and_steps_are_clear_errors():
    with pytest.raises(ValueError, match="choose one of"):
        D.get_sampler("euler")
    with pytest.raises(ValueError, match="between 1 and 50"):
        SCHEDULE.sampling_timesteps(0)


def test_guidance_of_one_is_the_conditional_prediction():
    x, vc, vu = np.ones(3), np.full(3, 0.2), np.full(3, -0.4)
    assert np.allclose(D.guided_x0(vc, vu, x, 0.6, 0.8, 1.0), D.v_to_x0(vc, x, 0.6, 0.8))
