"""The EDM output combination in Triton, with its backward.

    forward:   D = c_skip * x + c_out * F        in fp32 from any float x and F
    backward:  gx = c_skip * gD, gF = c_out * gD  each in its input's dtype, one read of gD
"""
from __future__ import annotations

import triton
import triton.language as tl

from sidkernels._triton import Launch, acc, launch_config, precond_coefficients, samples


@triton.jit
def _precond_out_kernel(X, F, SIGMA, OUT, D, sigma_data,
                        KIND: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    s = tl.load(SIGMA + n).to(ACC)
    c_skip, c_out, _ = precond_coefficients(s, tl.cast(sigma_data, ACC), KIND)
    x = tl.load(X + idx, mask=mask, other=0.0).to(ACC)
    f = tl.load(F + idx, mask=mask, other=0.0).to(ACC)
    tl.store(OUT + idx, (c_skip * x + c_out * f).to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _precond_out_bwd_kernel(G, SIGMA, GX, GF, D, sigma_data,
                            KIND: tl.constexpr, NEED_X: tl.constexpr, NEED_F: tl.constexpr,
                            ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    s = tl.load(SIGMA + n).to(ACC)
    c_skip, c_out, _ = precond_coefficients(s, tl.cast(sigma_data, ACC), KIND)
    g = tl.load(G + idx, mask=mask, other=0.0).to(ACC)
    if NEED_X:
        tl.store(GX + idx, (c_skip * g).to(GX.dtype.element_ty), mask=mask)
    if NEED_F:
        tl.store(GF + idx, (c_out * g).to(GF.dtype.element_ty), mask=mask)


def forward_launches(x, f, sigma, out, kind: int, sigma_data: float, *, sms=None, block=None) -> list[Launch]:
    n, d = samples(x)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    return [Launch(_precond_out_kernel, (n, n_chunks), (x, f, sigma, out, d, sigma_data),
                   dict(KIND=kind, ACC=acc(x, f, out), BLOCK=block, num_warps=num_warps))]


def backward_launches(g, sigma, gx, gf, kind: int, sigma_data: float, *, sms=None, block=None) -> list[Launch]:
    """``gx``/``gf`` are empty tensors when that gradient is not needed."""
    n, d = samples(g)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    return [Launch(_precond_out_bwd_kernel, (n, n_chunks), (g, sigma, gx, gf, d, sigma_data),
                   dict(KIND=kind, NEED_X=gx.numel() > 0, NEED_F=gf.numel() > 0, ACC=acc(g, gx, gf), BLOCK=block,
                        num_warps=num_warps))]
