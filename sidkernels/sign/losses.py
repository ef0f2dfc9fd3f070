"""SIGN's loss terms (docs/sign.md §4, a reconstruction [R]) and the IGN baseline terms (docs/sign.md §4.7).

Distances are per-sample means over elements (``l2``, ``l1``) or iCT's pseudo-Huber on the whole sample
(``pseudo_huber``: ``sqrt(|a - b|^2 + c^2) - c``, c = 0.00054 sqrt(d)); every term averages over samples.

    L_rec   = d_r(f(x), x)                                       x ~ data
    L_idem  = d_i(f^-(f(z)), f(z))                               z = sigma_max eps; grad through both f(z)
    L_flow  = d_f(f(x + t_{n+1} eps), sg f^-(x_hat_n))           x_hat_n: one teacher Euler step t_{n+1} -> t_n
    L_dmd   = 1/2 mean (x_g - sg(x_g - g))^2,  g = (D_psi - D_phi)(x_t) / (mean|x_g - D_phi(x_t)| + 1e-8)
              x_t = sg(x_g) + sigma eps (SiD sigma sampler); or the SiD generator loss on x_t = x_g + sigma eps
    L_reg   = d(f(z_k), y_k)                                     (z_k, y_k): teacher Heun pairs
    re-noised generation [R]: a fraction of the DMD (and fake-score) samples is x_g' = f(sg(x_g) + s eps),
              s log-uniform in [s_lo, s_hi], so that distribution matching also shapes the multi-step sampler
    IGN     L_tight = tanh(L~ / (a L_rec)) a L_rec,  L~ = -d(f(sg f(z)), sg f(z)),  L_rec detached
"""
from __future__ import annotations

import math

import torch

from sidkernels import add_noise, sample_distance, sid_generator_loss
from sidkernels.sigma import sample_sigma_sid
from sidkernels.sign.student import copy_call


def karras_grid(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                device=None) -> torch.Tensor:
    """Ascending ``[0, t_1, ..., t_N]``: t_i = (smin^(1/rho) + (i-1)/(N-1) (smax^(1/rho) - smin^(1/rho)))^rho."""
    i = torch.arange(n, dtype=torch.float64, device=device)
    t = (sigma_min ** (1 / rho) + i / (n - 1) * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho
    return torch.cat([t.new_zeros(1), t]).float()


def euler_step(teacher, x: torch.Tensor, t_from: torch.Tensor, t_to: torch.Tensor, labels=None) -> torch.Tensor:
    """One probability-flow ODE Euler step of the teacher from t_from to t_to (per sample; t_to may be 0)."""
    d = teacher(x, t_from, labels)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return x + (t_to - t_from).view(shape) * (x - d) / t_from.view(shape)


def rec_loss(f, x, labels, dist: str) -> torch.Tensor:
    return sample_distance(f(x, labels), x, dist, reduction="mean")


def idem_loss(f, x_g, labels, dist: str) -> torch.Tensor:
    """``d(f^-(x_g), x_g)`` with x_g = f(z) carrying gradient (through the copy's input too)."""
    return sample_distance(copy_call(f, x_g, labels), x_g, dist, reduction="mean")


def flow_pair(f, teacher, x, labels, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x_{n+1}), sg f^-(x_hat_n))`` with n ~ U{0..N-1} per sample; the whole target is stop-gradient."""
    n = torch.randint(0, len(grid) - 1, (x.shape[0],), device=x.device)
    t_next, t_prev = grid[n + 1], grid[n]
    x_next = add_noise(x, t_next)
    with torch.no_grad():
        target = copy_call(f, euler_step(teacher, x_next, t_next, t_prev, labels), labels)
    return f(x_next, labels), target


def flow_loss(f, teacher, x, labels, grid: torch.Tensor, dist: str) -> torch.Tensor:
    """Consistency with one teacher Euler step on the Karras grid."""
    return sample_distance(*flow_pair(f, teacher, x, labels, grid), dist, reduction="mean")


def dmd_loss(x_g, teacher, fake, labels, *, tmax: float, score_loss: str, alpha: float) -> torch.Tensor:
    """Distribution matching on generated x_g: DMD's normalised score difference, or the SiD loss."""
    sigma = sample_sigma_sid(x_g.shape[0], tmax=tmax, device=x_g.device)
    if score_loss == "sid":
        x_t, net_in = add_noise(x_g, sigma, return_net_input=True)
        a, b = teacher(x_t, sigma, labels, net_input=net_in), fake(x_t, sigma, labels, net_input=net_in)
        return sid_generator_loss(a, b, x_g, alpha=alpha, reduction="mean") / x_g[0].numel()
    if score_loss != "dmd":
        raise ValueError(f"score_loss must be 'dmd' or 'sid', got {score_loss!r}")
    with torch.no_grad():
        x_t, net_in = add_noise(x_g.detach(), sigma, return_net_input=True)
        real = teacher(x_t, sigma, labels, net_input=net_in)
        fake_d = fake(x_t, sigma, labels, net_input=net_in)
        norm = (x_g.detach().float() - real).abs().flatten(1).mean(1).view(-1, *[1] * (x_g.dim() - 1)) + 1e-8
        target = x_g.detach().float() - (fake_d - real) / norm
    return 0.5 * (x_g.float() - target).square().mean()


def renoised_generation(f, x_g, labels, fraction: float, sigma_range: tuple[float, float]) -> torch.Tensor:
    """``x_g`` with its last ``round(fraction N)`` samples replaced by ``f(sg(x_g) + s eps)`` (one re-noised step
    of the multi-step sampler, DMD2-style backward simulation), s log-uniform in ``sigma_range`` per sample."""
    m = round(fraction * x_g.shape[0])
    if m == 0:
        return x_g
    lo, hi = sigma_range
    sigma = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(m, device=x_g.device))
    noisy = add_noise(x_g[-m:].detach(), sigma)
    renoised = f(noisy, None if labels is None else labels[-m:])
    return torch.cat([x_g[:-m], renoised.to(x_g.dtype)])


def reg_loss(f, z_k, y_k, labels, dist: str) -> torch.Tensor:
    return sample_distance(f(z_k, labels), y_k, dist, reduction="mean")


def ign_tight_loss(f, z, labels, rec_per_sample: torch.Tensor, dist: str, a: float = 1.5) -> torch.Tensor:
    """IGN's clamped tightness: the outer f gets the gradient, the inner f(z) is a stop-gradient."""
    with torch.no_grad():
        inner = f(z, labels)
    raw = -sample_distance(f(inner, labels), inner, dist)
    scale = a * rec_per_sample.detach()
    return (torch.tanh(raw / scale) * scale).mean()
