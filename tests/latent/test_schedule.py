"""The sigma-space schedule against diffusers' own schedulers: abar, sigma_t, snapping, bad configs."""
import math

import numpy as np
import pytest
import torch

from sidkernels.latent.schedule import DiscreteSchedule, alphas_cumprod_from_config, prediction_type_from_config


@pytest.mark.parametrize("config", [
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
    dict(beta_schedule="squaredcos_cap_v2"),
    dict(beta_schedule="linear", num_train_timesteps=50, beta_start=0.001, beta_end=0.05),
])
def test_alphas_cumprod_match_diffusers_bitwise(config):
    from diffusers import DDPMScheduler
    sched = DDPMScheduler(**config)
    ours = alphas_cumprod_from_config(sched.config)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, sched.alphas_cumprod)
    # a plain dict as saved in scheduler_config.json, and the scheduler object itself
    assert torch.equal(alphas_cumprod_from_config(dict(sched.config)), sched.alphas_cumprod)
    assert torch.equal(alphas_cumprod_from_config(sched), sched.alphas_cumprod)


def test_trained_betas_and_explicit_alphas_cumprod():
    betas = np.linspace(1e-4, 0.03, 40)
    abar = torch.cumprod(1 - torch.tensor(betas, dtype=torch.float32), 0)
    assert torch.equal(alphas_cumprod_from_config({"trained_betas": betas.tolist()}), abar)
    assert torch.equal(alphas_cumprod_from_config({"alphas_cumprod": abar.tolist()}), abar)


def test_sigma_grid_is_the_ve_form_of_the_vp_schedule():
    from diffusers import DDPMScheduler
    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    s = DiscreteSchedule.from_config(sched.config)
    a = sched.alphas_cumprod.double()
    t = torch.arange(1000)
    # x_vp = sqrt(abar) x0 + sqrt(1 - abar) eps  <=>  x_vp / sqrt(abar) = x0 + sigma eps
    assert torch.allclose(s.sigma(t, torch.float64), ((1 - a) / a).sqrt(), rtol=1e-14, atol=0)
    assert torch.allclose(1 / (s.sigma(t, torch.float64) ** 2 + 1), a, rtol=1e-12, atol=0)
    assert bool((s.sigmas[1:] > s.sigmas[:-1]).all())
    assert s.sigmas[0].item() == pytest.approx(0.02916, rel=1e-3)   # SD 1.5's smallest and largest noise levels
    assert s.sigmas[-1].item() == pytest.approx(14.6146, rel=1e-3)


def test_snapping_picks_the_nearest_timestep_in_log_sigma():
    s = DiscreteSchedule.from_config(dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012))
    sigma = torch.exp(torch.empty(2000, dtype=torch.float64).uniform_(math.log(0.01), math.log(40)))
    logs = np.log(s.sigmas.numpy())
    expected = np.abs(np.log(sigma.numpy())[:, None] - logs[None, :]).argmin(axis=1)
    assert torch.equal(s.timestep(sigma), torch.from_numpy(expected))
    grid_t = torch.tensor([0, 1, 17, 500, 998, 999])
    assert torch.equal(s.timestep(s.sigma(grid_t, torch.float64)), grid_t)            # on the grid: exact
    assert torch.equal(s.timestep(s.sigma(grid_t, torch.float32)), grid_t)            # fp32-rounded too
    assert s.timestep(torch.tensor([1e-6, 1e6])).tolist() == [0, 999]                 # beyond the ends
    r = s.round_sigma(torch.tensor([0.5, 3.0]))
    assert r.dtype == torch.float32 and torch.equal(r, s.sigma(s.timestep(torch.tensor([0.5, 3.0]))))


@pytest.mark.parametrize("config, match", [
    ({"num_train_timesteps": 1000, "prediction_type": "epsilon"}, "none of alphas_cumprod, trained_betas"),
    ({"beta_schedule": "cosine-ish"}, "beta_schedule must be one of"),
    ({"beta_schedule": "linear", "rescale_betas_zero_snr": True}, "rescale_betas_zero_snr"),
    ({"trained_betas": [0.1, 1.5]}, r"betas must all lie in \(0, 1\)"),
    ({"alphas_cumprod": [0.9, 0.95]}, "decrease strictly"),
])
def test_bad_scheduler_configs_name_the_argument(config, match):
    with pytest.raises(ValueError, match="scheduler_config") as err:
        alphas_cumprod_from_config(config)
    assert err.match(match)


def test_scheduler_config_of_the_wrong_type():
    with pytest.raises(TypeError, match="scheduler_config must be a mapping"):
        alphas_cumprod_from_config([0.1, 0.2])


def test_prediction_types():
    assert prediction_type_from_config({}) == "epsilon"
    assert prediction_type_from_config({"prediction_type": "v_prediction"}) == "v_prediction"
    assert prediction_type_from_config({"prediction_type": "v_prediction"}, "epsilon") == "epsilon"
    with pytest.raises(ValueError, match="prediction_type must be one of .*'sample'"):
        prediction_type_from_config({"prediction_type": "sample"})
