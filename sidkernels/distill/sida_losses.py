"""The two SiDA objectives for one micro-batch (adversarial SiD, docs/sid.md §4), written with the fused ops.

The fake-score network f_psi doubles as the discriminator: its logit map l(x) ``[N, 1, r, r]`` is the
channel mean of its deepest encoder features (:mod:`sidkernels.networks.discriminator`).  With
``BCE(l, 1) = softplus(-l)`` and ``BCE(l, 0) = softplus(l)`` averaged over every logit of the micro-batch
(SiDA's "batch-normalised within each GPU"):

    fake/discriminator step; y = G(z) (no grad), real images r; one sigma_i ~ lognormal(-1.2, 1.2) and one
    noise n_i = sigma_i eps_i shared by y_i and r_i:
        L_psi = ls/B  sum_i lambda(sigma_i) |f_psi(y_i + n_i) - y_i|^2
              + lsd/B sum_i lambda(sigma_i) [BCE(l(r + n), 1) + BCE(l(y + n), 0)] / 2

    generator step; x_g = G(z), x_t = x_g + sigma eps with SiD's sigma draw:
        L_SiD = lsg/B sum_i SiD(f_phi(x_t), f_psi(x_t), x_g)                 (the fused SiD loss)
        L_gan = lsg_gan/B sum_i C H W BCE(clamp(l(x_t), -10, 10), 1) / w_i,   w_i = max(mean|x_g - f_phi(x_t)|, 1e-5)

The trainer adds ``0.5 L_SiD + 0.5 L_gan`` once the GAN term is on.  Both objectives return the
micro-batch's contribution to the step's loss (already divided by the per-rank batch B), so accumulation
rounds add up.  A sample with a NaN in any of its images, denoised outputs or logits is left out of every
term and of the BCE means (the official boolean-index filter, as a mask: no host sync, no dynamic shape;
the official generator step does not filter the logits, so one NaN logit makes its whole GAN term NaN).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sidkernels.distill.augment import augment
from sidkernels.distill.sid_losses import generate
from sidkernels import add_noise, fake_score_loss, sid_generator_loss
from sidkernels.ops._nan import nan_free_rows
from sidkernels.ops.fake_score_loss.reference import edm_loss_weight
from sidkernels.sigma import sample_sigma_lognormal, sample_sigma_sid

GAN_LOGIT_CLAMP = 10.0  # the generator's BCE sees logits clamped to [-10, 10]


def bce_with_logits_mean(logits: torch.Tensor, real: bool, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``BCE(logits, 1 if real else 0)`` over every logit of the kept samples (0 when none is kept).

    Dropped samples' logits are replaced by 0 before the softplus, so a NaN logit reaches neither the value
    nor the gradient.
    """
    rows = torch.where(keep[:, None], logits.float().flatten(1), 0)
    per_sample = F.softplus(-rows if real else rows).mean(dim=1)
    return torch.where(keep, per_sample, 0).sum() / keep.sum().clamp_min(1)


def sida_fake_loss(G, fake, z, labels, reals, *, init_sigma: float, scale: float, scale_d: float,
                   net_dtype: torch.dtype, augment_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(denoising part, discriminator part)`` of L_psi on fresh samples y = G(z) and real images ``reals``
    (same shape as y, in [-1, 1]; ``labels`` are the real batch's, also used for G).  Fakes and reals are
    augmented independently with probability ``augment_p`` each."""
    y_aug = r_aug = None
    with torch.no_grad():
        y = generate(G, z, labels, init_sigma)
        if augment_p > 0:
            y, y_aug = augment(y, augment_p)
            reals, r_aug = augment(reals, augment_p)
    sigma = sample_sigma_lognormal(z.shape[0], device=z.device)
    x_t, net_in, eps = add_noise(y, sigma, return_net_input=True, net_dtype=net_dtype, return_eps=True)
    D, logit_fake = fake(x_t, sigma, labels, augment_labels=y_aug, net_input=net_in, output="both")
    noisy_reals = reals + sigma.reshape(-1, 1, 1, 1) * eps.to(reals.dtype)
    logit_real = fake(noisy_reals, sigma, labels, augment_labels=r_aug, output="encoder")
    keep = nan_free_rows(y, D, logit_fake, logit_real)
    denoising = torch.where(keep, fake_score_loss(D, y, sigma, reduction="none"), 0).sum() * scale
    bce = 0.5 * (bce_with_logits_mean(logit_real, True, keep) + bce_with_logits_mean(logit_fake, False, keep))
    weight = torch.where(keep, edm_loss_weight(sigma.float()), 0).sum()
    return denoising, weight * bce * scale_d


def sida_generator_loss(G, teacher, fake, z, labels, *, init_sigma: float, alpha: float, tmax: float,
                        scale: float, scale_gan: float, net_dtype: torch.dtype,
                        with_gan: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_SiD, L_gan)`` of one micro-batch (``L_gan`` is 0 and the logits are not computed when
    ``with_gan`` is False, before the GAN term starts)."""
    x_g = generate(G, z, labels, init_sigma)
    sigma = sample_sigma_sid(z.shape[0], tmax=tmax, device=z.device)
    x_t, net_in = add_noise(x_g, sigma, return_net_input=True, net_dtype=net_dtype)
    a = teacher(x_t, sigma, labels, net_input=net_in)
    if not with_gan:
        b = fake(x_t, sigma, labels, net_input=net_in)
        return sid_generator_loss(a, b, x_g, alpha=alpha, reduction="sum", loss_scale=scale), x_g.new_zeros(())
    b, logits = fake(x_t, sigma, labels, net_input=net_in, output="both")
    loss_sid = sid_generator_loss(a, b, x_g, alpha=alpha, reduction="sum", loss_scale=scale)
    with torch.no_grad():  # one pass over x_g and a gives w and their NaN rows
        gap = (x_g.float() - a.float()).abs().flatten(1).mean(dim=1)
    keep = ~gap.isnan() & nan_free_rows(b, logits)
    w = torch.where(keep, gap, 1).clamp_min(1e-5)
    bce = bce_with_logits_mean(logits.clamp(-GAN_LOGIT_CLAMP, GAN_LOGIT_CLAMP), True, keep)
    per_sample = x_g[0].numel() * bce / w
    return loss_sid, torch.where(keep, per_sample, 0).sum() * scale_gan
