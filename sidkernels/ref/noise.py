"""Plain PyTorch reference for noise injection: ``x_t = x + sigma[n] * eps`` (math in fp32)."""
from __future__ import annotations

import torch

from sidkernels.ref.precond import coefficients


def add_noise_ref(x, sigma, eps, *, precond="edm", sigma_data=0.5, net_dtype=None):
    """Return ``(x_t, net_input)``: ``x_t = x + sigma*eps`` in x's dtype and ``c_in(sigma) * x_t`` in ``net_dtype``.

    The network input is formed from the fp32 ``x_t`` before it is rounded to x's dtype, as the fused kernel does.
    """
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    s = sigma.reshape(-1, *([1] * (x.dim() - 1))).to(acc)
    xt = x.to(acc) + s * eps.to(acc)
    c_in = coefficients(s, precond, sigma_data)[2]
    return xt.to(x.dtype), (c_in * xt).to(net_dtype or x.dtype)
