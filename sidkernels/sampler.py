"""EDM's 2nd-order Heun sampler for the probability-flow ODE, with optional stochastic churn (docs/networks.md §4).

Noise levels (float64, then ``net.round_sigma``)::

    t_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho,  i = 0..N-1;   t_N = 0
    s_min = max(sigma_min, net.sigma_min),  s_max = min(sigma_max, net.sigma_max)

Starting from ``x_0 = t_0 * latents`` (float64), each step::

    gamma = min(S_churn/N, sqrt(2) - 1) if S_min <= t_i <= S_max else 0
    t^ = round_sigma(t_i (1 + gamma));   x^ = x_i + sqrt(t^2 - t_i^2) S_noise eps
    d  = (x^ - D(x^, t^)) / t^;          x_{i+1} = x^ + (t_{i+1} - t^) d                    (Euler)
    if i < N-1:  d' = (x_{i+1} - D(x_{i+1}, t_{i+1})) / t_{i+1}
                 x_{i+1} = x^ + (t_{i+1} - t^) (d + d') / 2                                  (Heun)

so a run costs ``2N - 1`` denoiser evaluations.  With the defaults (``S_churn = 0``) it is deterministic.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def heun_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                round_sigma: Callable | None = None, device=None) -> torch.Tensor:
    """The ``num_steps + 1`` float64 noise levels ``t_0 > ... > t_{N-1} > t_N = 0``."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    frac = i / (num_steps - 1) if num_steps > 1 else i
    t = (hi + frac * (lo - hi)) ** rho
    if round_sigma is not None:
        t = torch.as_tensor(round_sigma(t), dtype=torch.float64, device=device)
    return torch.cat([t, t.new_zeros(1)])


@torch.no_grad()
def sample_heun(net, latents: torch.Tensor, *, num_steps: int = 18, class_labels: torch.Tensor | None = None,
                sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, S_churn: float = 0.0,
                S_min: float = 0.0, S_max: float = float("inf"), S_noise: float = 1.0,
                randn_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like, progress: bool = False,
                return_trajectory: bool = False, **net_kwargs):
    """Sample with EDM's Heun solver; returns the float64 result ``x_N`` (shape of ``latents``), and with
    ``return_trajectory`` also the states ``x_0 .. x_{N-1}`` at ``t_0 .. t_{N-1}`` stacked as ``[B, N, ...]``
    (before any churn noise of their step).

    Args:
        net: a denoiser ``net(x, sigma, class_labels, **net_kwargs) -> D`` (e.g. :class:`EDMPrecond`).
            Its ``sigma_min``/``sigma_max`` attributes and ``round_sigma`` method are used when present.
        latents: unit Gaussian noise ``[N, C, H, W]``; scaled by ``t_0``.
        class_labels: one-hot labels for conditional networks.
        S_churn, S_min, S_max, S_noise: stochastic sampling (``S_churn = 0``: deterministic).
        randn_like: noise source for churn (e.g. per-seed generators).
        progress: show a tqdm progress bar over the steps.
    """
    if not isinstance(latents, torch.Tensor) or latents.dim() < 2:
        raise ValueError(f"latents must be a batch tensor [N, ...], got "
                         f"{tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__}")
    s_min = max(sigma_min, getattr(net, "sigma_min", 0.0))
    s_max = min(sigma_max, getattr(net, "sigma_max", math.inf))
    round_sigma = getattr(net, "round_sigma", None)
    t_steps = heun_sigmas(num_steps, s_min, s_max, rho, round_sigma, latents.device)

    def denoise(x, t):
        return net(x, t, class_labels, **net_kwargs).to(torch.float64)

    def rounded(t):
        return torch.as_tensor(round_sigma(t), dtype=torch.float64) if round_sigma is not None else t

    steps = range(num_steps)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="heun", unit="step")
    gamma_churn = min(S_churn / num_steps, math.sqrt(2) - 1)
    x_next = latents.to(torch.float64) * t_steps[0]
    states = []
    for i in steps:
        x_cur, t_cur, t_next = x_next, t_steps[i], t_steps[i + 1]
        if return_trajectory:
            states.append(x_cur)
        gamma = gamma_churn if S_min <= float(t_cur) <= S_max else 0.0
        t_hat = rounded(t_cur + gamma * t_cur)
        x_hat = x_cur
        if S_churn > 0:  # noise is drawn at every step, as the official sampler does (same per-seed streams)
            x_hat = x_cur + (t_hat ** 2 - t_cur ** 2).sqrt() * S_noise * randn_like(x_cur)
        d_cur = (x_hat - denoise(x_hat, t_hat)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < num_steps - 1:
            d_prime = (x_next - denoise(x_next, t_next)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    if return_trajectory:
        return x_next, torch.stack(states, dim=1)
    return x_next
