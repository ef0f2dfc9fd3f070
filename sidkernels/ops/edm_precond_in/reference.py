"""Plain PyTorch reference of EDM input scaling: ``(c_in(sigma) x).to(dtype)`` and ``c_noise(sigma)``."""
from __future__ import annotations

import torch

from sidkernels._abi import SIGMA_DATA, acc_dtype
from sidkernels.ops._precond import coefficients, per_sample


def edm_precond_in_ref(x, sigma, precond="edm", sigma_data=SIGMA_DATA, dtype=None):
    """Network input ``(c_in * x).to(dtype)`` (math in fp32, fp64 for fp64 x) and ``c_noise`` (fp32, shape [N])."""
    s = sigma.reshape(-1).to(acc_dtype(x.dtype))
    _, _, c_in, c_noise = coefficients(s, precond, sigma_data)
    y = per_sample(c_in, x) * x.to(s.dtype)
    return y.to(dtype or x.dtype), c_noise.to(torch.float32)
