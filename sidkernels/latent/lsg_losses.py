"""The two SiD-LSG objectives for one micro-batch, written with the fused ops on :class:`LatentDenoiser`s.

Notation: ``D^w_net(x_t)`` is a denoiser guided with scale w (``F_u + w (F_c - F_u)``), t ~ U{tmin..tmax-1}
a discrete timestep per sample, ``sigma = sigma_t``, ``x_t = x + sigma eps``.  The generator is the UNet at
its fixed init timestep applied to pure noise, ``G(z, c) = D_G(sigma_init z; sigma_init, c)``.

    fake step (kappa1):  L_psi = ls/B * sum_i |D^k1_psi(x_t) - y|^2 / sigma_i^2,     y = G(z) (no grad)
    G step (kappa2/3, kappa4):
                         L_G = lsg/B * sum_i SiD(D^k4_phi(x_t), D^k2_psi(x_t), x_g),  x_g = G(z)

"Long and short guidance": the teacher phi is guided in the generator loss (kappa4), the fake score psi both
while it is trained (kappa1) and where the generator loss reads it (kappa2 = kappa3, one scale as in the
SiD-LSG code).  The fake loss weight 1/sigma^2 makes ``|D - y|^2 / sigma^2`` equal the epsilon-space MSE
``|eps_hat - eps|^2``, and for v-prediction ``|v_hat - v|^2 * snr/(snr+1)`` (snr/(snr+1) = abar), which
are the fake-score losses of SiD-LSG; it is the fused ``fake_score_loss`` with sigma_data = 1 (weight
``(sigma^2 + 1)/sigma^2``) times abar = ``1/(sigma^2 + 1)`` per sample.  ``SiD`` is the fused
``sid_generator_loss`` (alpha 1: ``(a - b)(b - x_g)/w``).  Samples with a NaN are dropped by both ops.

Both functions return the micro-batch's share of the step's loss (``scale`` = ls/B or lsg/B), so rounds of
gradient accumulation add up.  ``eps`` may be given (the same noise for two backends); by default it is
drawn inside :func:`sidkernels.add_noise`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import sidkernels as sk
from sidkernels.latent.denoiser import NET_INPUT_PRECOND, LatentDenoiser


@dataclass
class Draw:
    """The random inputs of one micro-batch: latents z ``[N, C, H, W]``, conditional embeddings cond
    ``[N, L, D]``, timesteps t ``[N]`` (int64) and optionally the noise eps (x's shape)."""
    z: torch.Tensor
    cond: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor | None = None


def generate(G: LatentDenoiser, z: torch.Tensor, cond: torch.Tensor, init_timestep: int) -> torch.Tensor:
    """One-step generation ``G(z, c) = D_G(sigma_init z; sigma_init, c)`` from unit latents z (fp32)."""
    t = torch.full((z.shape[0],), int(init_timestep), dtype=torch.long, device=z.device)
    sigma = G.sigma_of(t)
    return G(sigma.reshape(-1, 1, 1, 1) * z, sigma, cond, timesteps=t)


def noisy(x: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor | None, net_dtype: torch.dtype):
    """``(x_t, c_in x_t)``: x_t = x + sigma eps with eps drawn in the kernel, or from the given eps."""
    if eps is None:
        return sk.add_noise(x, sigma, return_net_input=True, net_dtype=net_dtype, precond=NET_INPUT_PRECOND)
    x_t = x + sigma.reshape(-1, 1, 1, 1).to(x.dtype) * eps.to(x.dtype)
    return x_t, sk.edm_precond_in(x_t, sigma, dtype=net_dtype, precond=NET_INPUT_PRECOND)[0]


def generator_loss(G: LatentDenoiser, teacher: LatentDenoiser, fake: LatentDenoiser, draw: Draw,
                   uncond: torch.Tensor, *, init_timestep: int, alpha: float, kappa_fake: float,
                   kappa_real: float, scale: float, net_dtype: torch.dtype) -> torch.Tensor:
    """``scale * sum_i SiD(D^kappa_real_teacher(x_t), D^kappa_fake_fake(x_t), x_g)`` with x_g = G(z).

    Gradients reach G through x_g and through both denoisers' input x_t (their weights are frozen by the
    caller); the same x_t, t and embeddings feed both.
    """
    x_g = generate(G, draw.z, draw.cond, init_timestep)
    sigma = G.sigma_of(draw.t)
    x_t, net_in = noisy(x_g, sigma, draw.eps, net_dtype)
    a = teacher(x_t, sigma, draw.cond, uncond=uncond, guidance=kappa_real, timesteps=draw.t, net_input=net_in)
    b = fake(x_t, sigma, draw.cond, uncond=uncond, guidance=kappa_fake, timesteps=draw.t, net_input=net_in)
    return sk.sid_generator_loss(a, b, x_g, alpha=alpha, reduction="sum", loss_scale=scale)


def fake_score_loss_on_generator(G: LatentDenoiser, fake: LatentDenoiser, draw: Draw, uncond: torch.Tensor, *,
                                 init_timestep: int, kappa: float, scale: float,
                                 net_dtype: torch.dtype) -> torch.Tensor:
    """``scale * sum_i |D^kappa_fake(y + sigma eps) - y|^2 / sigma_i^2`` on y = G(z) (no grad to G); G and the
    fake network see the same embeddings (after any prompt dropout, as in SiD-LSG)."""
    with torch.no_grad():
        y = generate(G, draw.z, draw.cond, init_timestep)
    sigma = fake.sigma_of(draw.t)
    x_t, net_in = noisy(y, sigma, draw.eps, net_dtype)
    D = fake(x_t, sigma, draw.cond, uncond=uncond, guidance=kappa, timesteps=draw.t, net_input=net_in)
    per_sample = sk.fake_score_loss(D, y, sigma, sigma_data=1.0, reduction="none")
    return (per_sample * fake.schedule.abar(draw.t)).sum() * scale
