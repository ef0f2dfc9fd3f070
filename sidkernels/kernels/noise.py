"""Fused noise injection (+ optional EDM input scaling) in Triton.

    eps[i]  = randn(seed, i)                 Philox 4x32-10 + Box-Muller, i = absolute element index
    x_t     = x + sigma[n] * eps             stored in x's dtype
    net_in  = c_in(sigma[n]) * x_t           optional, stored in the network dtype (from the fp32 x_t)

The seed is an int64 device tensor loaded in-kernel, so the launch needs no host sync and the caller can
draw it from the torch generator.  Because ``i`` is the element's position in memory (not in its block),
eps does not depend on the block size or the grid.  eps is never stored unless asked for (debug output):
the backward needs none (d x_t / d x = 1).
"""
from __future__ import annotations

import triton
import triton.language as tl

from sidkernels.kernels._common import acc_dtype, launch_config, precond_coefficients


@triton.jit
def _add_noise_kernel(X, SIGMA, SEED, XT, NET, EPS, D, sigma_data,
                      KIND: tl.constexpr, HAS_NET: tl.constexpr, HAS_EPS: tl.constexpr,
                      ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    seed = tl.load(SEED)
    eps = tl.randn(seed, idx).to(ACC)
    s = tl.load(SIGMA + n).to(ACC)
    x = tl.load(X + idx, mask=mask, other=0.0).to(ACC)
    xt = x + s * eps
    tl.store(XT + idx, xt.to(XT.dtype.element_ty), mask=mask)
    if HAS_NET:
        _, _, c_in = precond_coefficients(s, tl.cast(sigma_data, ACC), KIND)
        tl.store(NET + idx, (c_in * xt).to(NET.dtype.element_ty), mask=mask)
    if HAS_EPS:
        tl.store(EPS + idx, eps.to(EPS.dtype.element_ty), mask=mask)


def add_noise_fwd(x, sigma, seed, xt, net, eps, kind: int, sigma_data: float, block=None):
    """Launch on sample-major ``x`` [N, ...]; ``net``/``eps`` are empty tensors when not wanted."""
    n, d = x.shape[0], x.numel() // x.shape[0]
    block, num_warps, n_chunks = launch_config(n, d, x.device, block)
    _add_noise_kernel[(n, n_chunks)](
        x, sigma, seed, xt, net, eps, d, sigma_data,
        KIND=kind, HAS_NET=net.numel() > 0, HAS_EPS=eps.numel() > 0,
        ACC=acc_dtype(x), BLOCK=block, num_warps=num_warps)
