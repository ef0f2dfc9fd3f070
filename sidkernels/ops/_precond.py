"""The coefficients of EDM-style preconditioning, ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)``, in plain
PyTorch: the reference that the preconditioning, noise and raw-output loss ops share (their Triton twin is
:func:`sidkernels._triton.precond_coefficients`, the CUDA one ``precond_coefficients`` in csrc/device.cuh).

=====  ======================  ======================  ==================  ===========================
kind   c_skip                  c_out                   c_in                c_noise
=====  ======================  ======================  ==================  ===========================
edm    sd^2 / (s^2 + sd^2)     s*sd / sqrt(s^2+sd^2)   1 / sqrt(s^2+sd^2)  ln(s) / 4
vp     1                       -s                      1 / sqrt(s^2 + 1)   (M-1) * sigma_vp^-1(s)
ve     1                       s                       1                   ln(s / 2)
=====  ======================  ======================  ==================  ===========================

with ``sigma_vp^-1(s) = (sqrt(beta_min^2 + 2 beta_d ln(1 + s^2)) - beta_min) / beta_d`` (constants in
:mod:`sidkernels._abi`).  ``sd`` is ``sigma_data``; the vp/ve rows ignore it.
"""
from __future__ import annotations

import torch

from sidkernels._abi import PRECONDS, SIGMA_DATA, VP_BETA_D, VP_BETA_MIN, VP_M


def vp_sigma_inv(sigma: torch.Tensor, beta_d: float = VP_BETA_D, beta_min: float = VP_BETA_MIN) -> torch.Tensor:
    """Inverse of the VP schedule: ``t = (sqrt(beta_min^2 + 2 beta_d ln(1 + sigma^2)) - beta_min) / beta_d``."""
    return ((beta_min ** 2 + 2 * beta_d * torch.log1p(sigma * sigma)).sqrt() - beta_min) / beta_d


def coefficients(sigma: torch.Tensor, kind: str = "edm", sigma_data: float = SIGMA_DATA):
    """Return ``(c_skip, c_out, c_in, c_noise)`` for ``sigma`` (any shape), computed in ``sigma``'s dtype."""
    s = sigma
    if kind == "edm":
        denom = s * s + sigma_data ** 2
        rs = torch.rsqrt(denom)
        return sigma_data ** 2 / denom, s * sigma_data * rs, rs, torch.log(s) / 4
    if kind == "vp":
        return torch.ones_like(s), -s, torch.rsqrt(s * s + 1), (VP_M - 1) * vp_sigma_inv(s)
    if kind == "ve":
        return torch.ones_like(s), s, torch.ones_like(s), torch.log(s / 2)
    raise ValueError(f"precond must be one of {PRECONDS}, got {kind!r}")


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[N]`` shaped ``[N, 1, ..., 1]`` to broadcast over the samples of ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))
