"""Plain PyTorch reference for EDM-style preconditioning (SID.md section 5.1).

A preconditioned denoiser is ``D(x, sigma) = c_skip * x + c_out * F(c_in * x, c_noise)``:

=====  ======================  ======================  ==================  ===========================
kind   c_skip                  c_out                   c_in                c_noise
=====  ======================  ======================  ==================  ===========================
edm    sd^2 / (s^2 + sd^2)     s*sd / sqrt(s^2+sd^2)   1 / sqrt(s^2+sd^2)  ln(s) / 4
vp     1                       -s                      1 / sqrt(s^2 + 1)   (M-1) * sigma_vp^-1(s)
ve     1                       s                       1                   ln(s / 2)
=====  ======================  ======================  ==================  ===========================

with ``sigma_vp^-1(s) = (sqrt(beta_min^2 + 2 beta_d ln(1 + s^2)) - beta_min) / beta_d``, beta_d = 19.9,
beta_min = 0.1, M = 1000.  ``sd`` is ``sigma_data`` (0.5); the vp/ve rows ignore it.
"""
from __future__ import annotations

import torch

PRECOND_KINDS = ("edm", "vp", "ve")
KIND_CODE = {kind: i for i, kind in enumerate(PRECOND_KINDS)}

VP_BETA_D = 19.9
VP_BETA_MIN = 0.1
VP_M = 1000


def coefficients(sigma: torch.Tensor, kind: str = "edm", sigma_data: float = 0.5):
    """Return ``(c_skip, c_out, c_in, c_noise)`` for ``sigma`` (any shape), computed in ``sigma``'s dtype."""
    s = sigma
    if kind == "edm":
        denom = s * s + sigma_data ** 2
        rs = torch.rsqrt(denom)
        return sigma_data ** 2 / denom, s * sigma_data * rs, rs, torch.log(s) / 4
    if kind == "vp":
        inv_t = (torch.sqrt(VP_BETA_MIN ** 2 + 2 * VP_BETA_D * torch.log1p(s * s)) - VP_BETA_MIN) / VP_BETA_D
        return torch.ones_like(s), -s, torch.rsqrt(s * s + 1), (VP_M - 1) * inv_t
    if kind == "ve":
        return torch.ones_like(s), s, torch.ones_like(s), torch.log(s / 2)
    raise ValueError(f"precond must be one of {PRECOND_KINDS}, got {kind!r}")


def _per_sample(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (x.dim() - 1)))


def precond_in_ref(x, sigma, kind="edm", sigma_data=0.5, dtype=None):
    """Network input ``(c_in * x).to(dtype)`` (math in fp32, fp64 for fp64 x) and ``c_noise`` of shape [N]."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    s = sigma.reshape(-1).to(acc)
    _, _, c_in, c_noise = coefficients(s, kind, sigma_data)
    y = _per_sample(c_in, x) * x.to(acc)
    return y.to(dtype or x.dtype), c_noise.to(torch.float32)


def precond_out_ref(x, F, sigma, kind="edm", sigma_data=0.5):
    """Denoised ``D = c_skip * x + c_out * F`` in fp32 (fp64 if x or F is fp64)."""
    acc = torch.float64 if torch.float64 in (x.dtype, F.dtype) else torch.float32
    s = sigma.reshape(-1).to(acc)
    c_skip, c_out, _, _ = coefficients(s, kind, sigma_data)
    return _per_sample(c_skip, x) * x.to(acc) + _per_sample(c_out, x) * F.to(acc)

