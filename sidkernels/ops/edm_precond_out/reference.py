"""Plain PyTorch reference of the EDM output combination ``D = c_skip(sigma) x + c_out(sigma) F``."""
from __future__ import annotations

from sidkernels._abi import SIGMA_DATA, acc_dtype
from sidkernels.ops._precond import coefficients, per_sample


def edm_precond_out_ref(x, F, sigma, precond="edm", sigma_data=SIGMA_DATA):
    """Denoised ``D = c_skip * x + c_out * F`` in fp32 (fp64 if x or F is fp64)."""
    s = sigma.reshape(-1).to(acc_dtype(x.dtype, F.dtype))
    c_skip, c_out, _, _ = coefficients(s, precond, sigma_data)
    return per_sample(c_skip, x) * x.to(s.dtype) + per_sample(c_out, x) * F.to(s.dtype)
