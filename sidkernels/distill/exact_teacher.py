"""The analytic teacher of the embedded mixture: its closed-form denoiser as a network-shaped module.

For the mixture ``p = sum_k pi_k N(mu_k, s^2 I)`` (:mod:`sidkernels.distill.mixture`, uniform pi_k) and
``x_t = x_0 + sigma eps``, the posterior mean is a softmax over the K components::

    v      = s^2 + sigma^2
    r_k    = softmax_k(-|x_t - mu_k|^2 / (2 v))                      (responsibilities)
    D(x_t) = E[x_0 | x_t] = sum_k r_k [mu_k + (s^2 / v)(x_t - mu_k)] = mu_bar + (s^2 / v)(x_t - mu_bar)
    dD/dx_t = (s^2 / v) I + (sigma^2 / v^2) Cov_r[mu]                (symmetric: D = x_t + sigma^2 grad log p_sigma)

with ``mu_bar = sum_k r_k mu_k``.  :class:`ExactTeacher` evaluates this in fp64 (autocast off) and returns
D in fp32 under the preconditioners' calling convention, so it drops in wherever the trainer calls a
teacher ``f_phi``: SiD's generator loss, which backpropagates through the teacher's input, and the Heun
sampler of the teacher baseline.  Its error as a teacher is zero; what is left is the Heun sampler's
discretisation and SiD's own floor.

What the analytic teacher does not provide is a network to start the one-step generator and the fake
score from.  SiD starts both from the teacher; with ``teacher="exact"`` the trainer starts them from the
cached network teacher of the mixture (:func:`sidkernels.distill.mixture_teacher.cached_teacher`), the same network
the ``teacher=None`` runs distil, so an exact-teacher run and a network-teacher run differ only in f_phi.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from sidkernels.distill.mixture import DigitMixture


def exact_denoiser(x: torch.Tensor, sigma: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
    """``E[x_0 | x_t = x]`` for a uniform mixture of ``N(means[k], std^2 I)``.

    Args:
        x: ``[N, ...]`` noisy points (any float dtype; the math runs in ``means``' dtype).
        sigma: ``[N]`` or one-element noise levels (>= 0; sigma 0 returns x).
        means: ``[K, D]`` component means, D = x[0].numel().
        std: the per-component standard deviation s > 0.
    Returns:
        D in ``means``' dtype, shape of x; differentiable w.r.t. x.  NaN in a sample's x stays in that sample.
    """
    y = x.flatten(1).to(means.dtype)
    var = std ** 2 + sigma.to(means.dtype).reshape(-1).expand(y.shape[0]) ** 2
    sq = (y * y).sum(1, keepdim=True) - 2 * y @ means.T + (means * means).sum(1)
    resp = torch.softmax(-sq / (2 * var[:, None]), dim=1)
    mean_mu = resp @ means
    return (mean_mu + (std ** 2 / var)[:, None] * (y - mean_mu)).view(x.shape)


class ExactTeacher(nn.Module):
    """The mixture's exact denoiser with :class:`~sidkernels.networks.precond.EDMPrecond`'s interface.

    Exposes ``img_resolution`` (8), ``img_channels`` (1), ``label_dim`` (0: unconditional),
    ``sigma_min``/``sigma_max`` (0, inf), ``sigma_data`` (0.5, unused) and ``round_sigma`` (identity); the
    means are an fp64 buffer, so ``.to(device)`` moves it.  It has no parameters.
    """

    def __init__(self, mixture: DigitMixture):
        super().__init__()
        if mixture.std <= 0:
            raise ValueError(f"mixture.std must be > 0, got {mixture.std}")
        c, r, r2 = mixture.shape
        if r != r2:
            raise ValueError(f"mixture images must be square, got shape {mixture.shape}")
        self.register_buffer("means", mixture.means.flatten(1).to(torch.float64).clone())
        self.std = float(mixture.std)
        self.img_resolution = r
        self.img_channels = c
        self.label_dim = 0
        self.sigma_min = 0.0
        self.sigma_max = math.inf
        self.sigma_data = 0.5

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)

    def forward(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None, *, net_input: torch.Tensor | None = None,
                force_fp32: bool = False, output: str = "decoder", **model_kwargs) -> torch.Tensor:
        """``D(x, sigma) = E[x_0 | x_t = x]`` in fp32, shape of x (fp64 math, autocast off).

        Args:
            x: noisy images ``[N, img_channels, R, R]``, any float dtype; gradients flow back to it.
            sigma: a number, a one-element tensor, or one value per sample (``[N]`` or ``[N, 1, 1, 1]``), >= 0;
                rounded to fp32 as the networks' wrappers do.
            class_labels: ignored (unconditional).
            augment_labels: must be None: the exact denoiser is that of the un-augmented mixture.
            net_input: accepted for the calling convention (shape-checked) and not used: D is computed
                from x itself, so a low-precision ``c_in x`` from the noise op does not round the teacher.
            force_fp32: accepted, no effect (the math is fp64).
            output: only ``"decoder"`` (there is no discriminator head).
        """
        if output != "decoder":
            raise ValueError(f"output must be 'decoder' for the exact teacher (no discriminator head), got {output!r}")
        if augment_labels is not None:
            raise ValueError("augment_labels must be None: the exact teacher denoises the un-augmented mixture")
        if model_kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(model_kwargs)}")
        r = self.img_resolution
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != (self.img_channels, r, r):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [N, {self.img_channels}, {r}, {r}], got {shape}")
        if net_input is not None and net_input.shape != x.shape:
            raise ValueError(f"net_input must have the shape of x {tuple(x.shape)}, got {tuple(net_input.shape)}")
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)  # as the preconditioners take it
        if sigma.numel() != 1 and sigma.numel() != x.shape[0]:
            raise ValueError(f"sigma must be a scalar or have one value per sample ({x.shape[0]}), "
                             f"got shape {tuple(sigma.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            D = exact_denoiser(x, sigma, self.means, self.std)
        return D.to(torch.float32)
