"""The two SiD objectives for one micro-batch (docs/sid.md), written with the fused ops.

Both return the micro-batch's contribution to the step's loss, already normalised the official way
(``scale / batch_gpu_total`` times the sum over the micro-batch), so accumulation rounds just add up.
They are the functions the trainer compiles (``torch.compile(fullgraph=True)``).
"""
from __future__ import annotations

import torch

from sidkernels.distill.augment import augment
from sidkernels import add_noise, fake_score_loss, sid_generator_loss, sid_generator_loss_raw
from sidkernels.sigma import sample_sigma_lognormal, sample_sigma_sid


def generate(G, z, labels, init_sigma: float):
    """The one-step generator: ``G(z) = D_theta(init_sigma * z; init_sigma)``."""
    return G(init_sigma * z, torch.full((z.shape[0],), init_sigma, device=z.device), labels)


def generator_loss(G, teacher, fake, z, labels, *, init_sigma: float, alpha: float, tmax: float, scale: float,
                   net_dtype: torch.dtype, raw: bool = False):
    """``scale * sum_i loss_SiD(f_phi(x_t), f_psi(x_t), x_g)`` with x_g = G(z), x_t = x_g + sigma eps.

    Gradients reach G directly through x_g and through both networks' inputs x_t (their weights are frozen
    by the caller).  The same x_t and sigma feed both networks; noise injection also writes the networks'
    shared input ``c_in(sigma) x_t`` in ``net_dtype``.  ``raw``: take the networks' raw outputs (``output="raw"``;
    both preconditioned like the teacher) into the loss fused from raw outputs, so neither denoiser is formed.
    """
    x_g = generate(G, z, labels, init_sigma)
    sigma = sample_sigma_sid(z.shape[0], tmax=tmax, device=z.device)
    x_t, net_in = add_noise(x_g, sigma, return_net_input=True, net_dtype=net_dtype)
    if raw:
        F_phi = teacher(x_t, sigma, labels, net_input=net_in, output="raw")
        F_psi = fake(x_t, sigma, labels, net_input=net_in, output="raw")
        return sid_generator_loss_raw(F_phi, F_psi, x_t, x_g, sigma, alpha=alpha, precond=teacher.precond,
                                      sigma_data=teacher.sigma_data, reduction="sum", loss_scale=scale)
    a = teacher(x_t, sigma, labels, net_input=net_in)
    b = fake(x_t, sigma, labels, net_input=net_in)
    return sid_generator_loss(a, b, x_g, alpha=alpha, reduction="sum", loss_scale=scale)


def fake_score_loss_on_generator(G, fake, z, labels, *, init_sigma: float, scale: float, net_dtype: torch.dtype,
                                 augment_p: float = 0.0):
    """``scale * sum_i lambda(sigma_i) |f_psi(y + sigma eps, a_i) - y|^2`` on fresh samples y = G(z) (no grad
    to G), augmented with probability ``augment_p`` (y and its labels a_i; :mod:`sidkernels.distill.augment`)."""
    aug_labels = None
    with torch.no_grad():
        y = generate(G, z, labels, init_sigma)
        if augment_p > 0:
            y, aug_labels = augment(y, augment_p)
    sigma = sample_sigma_lognormal(z.shape[0], device=z.device)
    x_t, net_in = add_noise(y, sigma, return_net_input=True, net_dtype=net_dtype)
    D = fake(x_t, sigma, labels, augment_labels=aug_labels, net_input=net_in)
    return fake_score_loss(D, y, sigma, reduction="sum", loss_scale=scale)


def denoising_loss(net, y, labels, *, scale: float, net_dtype: torch.dtype):
    """EDM training loss on data y (used to train the embedded teacher)."""
    sigma = sample_sigma_lognormal(y.shape[0], device=y.device)
    x_t, net_in = add_noise(y, sigma, return_net_input=True, net_dtype=net_dtype)
    return fake_score_loss(net(x_t, sigma, labels, net_input=net_in), y, sigma, reduction="sum", loss_scale=scale)
