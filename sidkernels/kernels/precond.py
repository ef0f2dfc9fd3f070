"""Fused EDM preconditioning (SID.md 5.1) in Triton: input scaling and output combination, with backward.

    forward in :  y = (c_in * x).to(net dtype),   c_noise[n] (fp32, written by each sample's first chunk)
    backward in:  gx = (c_in * gy + addend).to(x dtype)       (addend: the noise op's d x_t term, optional)
    forward out:  D = c_skip * x + c_out * F      in fp32 from any float x and F
    backward out: gx = c_skip * gD, gF = c_out * gD            each in its input's dtype, one read of gD

Coefficients are computed per sample in-kernel from sigma (fp32 math, fp64 for fp64 inputs).
"""
from __future__ import annotations

import triton
import triton.language as tl

from sidkernels.kernels._common import acc_dtype, launch_config, precond_c_noise, precond_coefficients


@triton.jit
def _precond_in_kernel(X, SIGMA, Y, CNOISE, D, sigma_data,
                       KIND: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    offs = chunk.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    s = tl.load(SIGMA + n).to(ACC)
    _, _, c_in = precond_coefficients(s, tl.cast(sigma_data, ACC), KIND)
    x = tl.load(X + n * D + offs, mask=mask, other=0.0).to(ACC)
    tl.store(Y + n * D + offs, (c_in * x).to(Y.dtype.element_ty), mask=mask)
    if chunk == 0:
        tl.store(CNOISE + n, precond_c_noise(s, KIND).to(CNOISE.dtype.element_ty))


@triton.jit
def _precond_in_bwd_kernel(GY, SIGMA, ADD, GX, D, sigma_data,
                           KIND: tl.constexpr, HAS_ADD: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    s = tl.load(SIGMA + n).to(ACC)
    _, _, c_in = precond_coefficients(s, tl.cast(sigma_data, ACC), KIND)
    g = c_in * tl.load(GY + idx, mask=mask, other=0.0).to(ACC)
    if HAS_ADD:
        g += tl.load(ADD + idx, mask=mask, other=0.0).to(ACC)
    tl.store(GX + idx, g.to(GX.dtype.element_ty), mask=mask)


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


def _grid(t, block):
    n, d = t.shape[0], t.numel() // t.shape[0]
    block, num_warps, n_chunks = launch_config(n, d, t.device, block)
    return (n, n_chunks), d, block, num_warps


def precond_in_fwd(x, sigma, y, c_noise, kind: int, sigma_data: float, block=None):
    grid, d, block, num_warps = _grid(x, block)
    _precond_in_kernel[grid](x, sigma, y, c_noise, d, sigma_data, KIND=kind, ACC=acc_dtype(x, y),
                             BLOCK=block, num_warps=num_warps)


def precond_in_bwd(gy, sigma, addend, gx, kind: int, sigma_data: float, block=None):
    """``addend`` is an empty tensor when there is none."""
    grid, d, block, num_warps = _grid(gy, block)
    _precond_in_bwd_kernel[grid](gy, sigma, addend, gx, d, sigma_data, KIND=kind, HAS_ADD=addend.numel() > 0,
                                 ACC=acc_dtype(gy, gx), BLOCK=block, num_warps=num_warps)


def precond_out_fwd(x, f, sigma, out, kind: int, sigma_data: float, block=None):
    grid, d, block, num_warps = _grid(x, block)
    _precond_out_kernel[grid](x, f, sigma, out, d, sigma_data, KIND=kind, ACC=acc_dtype(x, f, out),
                              BLOCK=block, num_warps=num_warps)


def precond_out_bwd(g, sigma, gx, gf, kind: int, sigma_data: float, block=None):
    """``gx``/``gf`` are empty tensors when that gradient is not needed."""
    grid, d, block, num_warps = _grid(g, block)
    _precond_out_bwd_kernel[grid](g, sigma, gx, gf, d, sigma_data, KIND=kind, NEED_X=gx.numel() > 0,
                                  NEED_F=gf.numel() > 0, ACC=acc_dtype(g, gx, gf), BLOCK=block,
                                  num_warps=num_warps)
