"""EDM Heun sampler (docs/networks.md §4) on an analytic Gaussian denoiser, whose probability-flow ODE is solvable.

For data ~ N(mu, s^2 I) the exact denoiser is D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2), and the
ODE dx/dsigma = (x - D) / sigma maps x_T at sigma_max to x_0 = mu + (x_T - mu) s / sqrt(s^2 + sigma_max^2).
"""
import math

import pytest
import torch

from sidkernels.networks import build_preset
from sidkernels.sampler import heun_sigmas, sample_heun

MU, S = 0.3, 0.5


class GaussianDenoiser:
    """Exact denoiser of N(MU, S^2); counts evaluations, records the sigmas it was called with."""

    def __init__(self, sigma_min=None, sigma_max=None, round_to=None):
        self.calls = []
        if sigma_min is not None:
            self.sigma_min = sigma_min
        if sigma_max is not None:
            self.sigma_max = sigma_max
        if round_to is not None:
            self.round_sigma = lambda t: torch.round(torch.as_tensor(t) / round_to) * round_to

    def __call__(self, x, sigma, class_labels=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        self.calls.append(float(sigma))
        return (S ** 2 * x + sigma ** 2 * MU) / (S ** 2 + sigma ** 2)


def exact_solution(latents, sigma_max=80.0):
    x_T = sigma_max * latents.double()
    return MU + (x_T - MU) * S / math.sqrt(S ** 2 + sigma_max ** 2)


def max_error(num_steps, latents):
    return (sample_heun(GaussianDenoiser(), latents, num_steps=num_steps) - exact_solution(latents)).abs().max()


def test_lands_on_the_exact_ode_solution():
    latents = torch.randn(64, 3, 4, 4, dtype=torch.float64)
    scale = exact_solution(latents).abs().max()
    assert max_error(40, latents) < 1.2e-2 * scale
    assert max_error(256, latents) < 5e-4 * scale


def test_second_order_convergence():
    latents = torch.randn(16, 1, 2, 2, dtype=torch.float64)
    e40, e80 = max_error(40, latents), max_error(80, latents)
    assert 3.0 < e40 / e80 < 5.0  # Heun: error ~ N^-2


@pytest.mark.parametrize("num_steps", [1, 2, 18, 40])
def test_nfe_and_schedule(num_steps):
    net = GaussianDenoiser()
    out = sample_heun(net, torch.randn(2, 3, 4, 4), num_steps=num_steps)
    assert out.dtype == torch.float64 and out.shape == (2, 3, 4, 4)
    assert len(net.calls) == 2 * num_steps - 1
    t = heun_sigmas(num_steps, 0.002, 80.0)
    assert t.dtype == torch.float64 and t[-1] == 0 and t[0] == pytest.approx(80.0)
    if num_steps > 1:
        assert t[-2] == pytest.approx(0.002) and bool((t[:-1] > t[1:]).all())
        rho_7 = (80 ** (1 / 7) + 1 / (num_steps - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
        assert t[1] == pytest.approx(rho_7)


def test_network_sigma_range_and_round_sigma_hook():
    net = GaussianDenoiser(sigma_min=0.01, sigma_max=50.0, round_to=0.001)
    sample_heun(net, torch.randn(1, 1, 2, 2), num_steps=5)
    assert net.calls[0] == pytest.approx(50.0) and min(net.calls) == pytest.approx(0.01)
    assert all(abs(c * 1000 - round(c * 1000)) < 1e-6 for c in net.calls)


def test_deterministic_by_default_and_no_noise_drawn():
    drawn = []

    def randn_like(x):
        drawn.append(1)
        return torch.randn_like(x)

    latents = torch.randn(4, 1, 2, 2)
    a = sample_heun(GaussianDenoiser(), latents, num_steps=6, randn_like=randn_like)
    b = sample_heun(GaussianDenoiser(), latents, num_steps=6)
    assert torch.equal(a, b) and not drawn


def test_stochastic_churn_matches_the_data_distribution():
    torch.manual_seed(0)
    latents = torch.randn(4096, 1, 1, 1, dtype=torch.float64)
    net = GaussianDenoiser()
    out = sample_heun(net, latents, num_steps=32, S_churn=40, S_min=0.05, S_max=50, S_noise=1.0)
    assert not torch.allclose(out, exact_solution(latents), atol=1e-2)
    assert out.mean().item() == pytest.approx(MU, abs=0.03)
    assert out.std().item() == pytest.approx(S, rel=0.06)
    # gamma = min(S_churn / N, sqrt(2) - 1) raises sigma inside [S_min, S_max]: t_hat = t (1 + gamma)
    t = heun_sigmas(32, 0.002, 80.0)
    inside = float(t[3])
    assert inside * (1 + math.sqrt(2) - 1) == pytest.approx(net.calls[2 * 3], rel=1e-9)


def test_real_network_and_progress_bar():
    net = build_preset("cifar10-cond", img_resolution=8, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                       attn_resolutions=[4], dropout=0.0).eval()
    labels = torch.eye(10)[[1, 2]]
    out = sample_heun(net, torch.randn(2, 3, 8, 8), num_steps=3, class_labels=labels, progress=True)
    assert out.shape == (2, 3, 8, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="class_labels are required"):
        sample_heun(net, torch.randn(2, 3, 8, 8), num_steps=2)


def test_argument_errors():
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        sample_heun(GaussianDenoiser(), torch.randn(1, 1, 2, 2), num_steps=0)
    with pytest.raises(ValueError, match="latents must be a batch tensor"):
        sample_heun(GaussianDenoiser(), torch.tensor(1.0))


def test_trajectory_states_lie_on_the_exact_ode_path():
    """State i sits at t_i: for the Gaussian, x(t) = MU + (x_T - MU) sqrt(S^2 + t^2) / sqrt(S^2 + sigma_max^2)."""
    latents = torch.randn(8, 1, 2, 2, dtype=torch.float64)
    out, states = sample_heun(GaussianDenoiser(), latents, num_steps=256, return_trajectory=True)
    assert torch.equal(out, sample_heun(GaussianDenoiser(), latents, num_steps=256))
    assert states.shape == (8, 256, 1, 2, 2)
    assert torch.equal(states[:, 0], 80.0 * latents)
    t = heun_sigmas(256, 0.002, 80.0)
    for i in (1, 100, 200, 255):
        exact = MU + (80.0 * latents - MU) * math.sqrt(S ** 2 + t[i] ** 2) / math.sqrt(S ** 2 + 80.0 ** 2)
        torch.testing.assert_close(states[:, i], exact, atol=1e-3 * exact.abs().max(), rtol=0)
