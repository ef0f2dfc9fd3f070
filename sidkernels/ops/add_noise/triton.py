"""Fused noise injection (+ optional network-input scaling) in Triton.

    eps[n, i] = the 4-per-Philox normal stream of :mod:`sidkernels.ops.add_noise.reference` (tl.randn4x)
    x_t       = x + sigma[n] * eps              stored in x's dtype
    net_in    = c_in(sigma[n]) * x_t            optional, stored in the network dtype (from the fp32 x_t)
    eps                                          optional (debug/test output)

Each program draws BLOCK/4 Philox outputs for its BLOCK elements (four normals per call, interleaved back
into memory order).  The seed is an int64 device tensor loaded in-kernel, so the launch needs no host sync and
the caller can draw it from the torch generator.  The backward needs no eps (d x_t / d x = 1).
"""
from __future__ import annotations

import triton
import triton.language as tl

from sidkernels._triton import Launch, acc, launch_config, precond_coefficients, samples


@triton.jit
def _add_noise_kernel(X, SIGMA, SEED, XT, NET, EPS, D, sigma_data,
                      KIND: tl.constexpr, HAS_NET: tl.constexpr, HAS_EPS: tl.constexpr,
                      ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    groups = chunk * (BLOCK // 4) + tl.arange(0, BLOCK // 4)
    e0, e1, e2, e3 = tl.randn4x(tl.load(SEED), (n << 32) + groups)    # Philox counter (group, sample, 0, 0)
    eps = tl.interleave(tl.interleave(e0, e2), tl.interleave(e1, e3)).to(ACC)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    s = tl.load(SIGMA + n).to(ACC)
    x = tl.load(X + idx, mask=mask, other=0.0).to(ACC)
    xt = x + s * eps
    tl.store(XT + idx, xt.to(XT.dtype.element_ty), mask=mask)
    if HAS_NET:
        _, _, c_in = precond_coefficients(s, tl.cast(sigma_data, ACC), KIND)
        tl.store(NET + idx, (c_in * xt).to(NET.dtype.element_ty), mask=mask)
    if HAS_EPS:
        tl.store(EPS + idx, eps.to(EPS.dtype.element_ty), mask=mask)


def launches(x, sigma, seed, xt, net, eps, kind: int, sigma_data: float, *, sms=None, block=None) -> list[Launch]:
    """On sample-major ``x`` [N, ...]; ``net``/``eps`` are empty tensors when not wanted."""
    n, d = samples(x)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    return [Launch(_add_noise_kernel, (n, n_chunks), (x, sigma, seed, xt, net, eps, d, sigma_data),
                   dict(KIND=kind, HAS_NET=net.numel() > 0, HAS_EPS=eps.numel() > 0, ACC=acc(x), BLOCK=block,
                        num_warps=num_warps))]
