"""Noise-level samplers of SiD (docs/sid.md §1.2)."""
from __future__ import annotations

import torch


def _check_n(n) -> int:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


def sample_sigma_sid(n, *, tmax=800, sigma_min=0.002, sigma_max=80.0, rho=7.0, device=None,
                     dtype=torch.float32, generator=None):
    """SiD generator-step sigma: the EDM/Karras schedule read at a continuous position truncated by tmax.

        u ~ U[0, 1) * tmax / 1000;   sigma = (smax^(1/rho) + (1 - u) (smin^(1/rho) - smax^(1/rho)))^rho

    With the defaults sigma is in [0.002, ~24.41).  Returns shape [n].
    """
    _check_n(n)
    if not 0 < tmax <= 1000:
        raise ValueError(f"tmax must be in (0, 1000], got {tmax}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    u = torch.rand(n, device=device, dtype=torch.float64, generator=generator) * (tmax / 1000)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((hi + (1 - u) * (lo - hi)) ** rho).to(dtype)


def sample_sigma_lognormal(n, *, p_mean=-1.2, p_std=1.2, device=None, dtype=torch.float32, generator=None):
    """EDM training sigma: ``exp(p_mean + p_std * xi)``, xi ~ N(0, 1) (not truncated).  Shape [n]."""
    _check_n(n)
    if not p_std > 0:
        raise ValueError(f"p_std must be > 0, got {p_std}")
    xi = torch.randn(n, device=device, dtype=torch.float32, generator=generator)
    return torch.exp(p_mean + p_std * xi).to(dtype)
