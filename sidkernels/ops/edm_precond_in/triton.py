"""EDM input scaling in Triton, with its backward (which the noise op's backward shares).

    forward:   y  = (c_in * x).to(net dtype),  c_noise[n] (fp32, written by each sample's first chunk)
    backward:  gx = (c_in * gy + addend).to(x dtype)        (addend: the noise op's d x_t term, optional)

Coefficients are computed per sample in-kernel from sigma (fp32 math, fp64 for fp64 inputs).
"""
from __future__ import annotations

import triton
import triton.language as tl

from sidkernels._triton import Launch, acc, launch_config, precond_c_noise, precond_coefficients, samples


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


def forward_launches(x, sigma, y, c_noise, kind: int, sigma_data: float, *, sms=None, block=None) -> list[Launch]:
    n, d = samples(x)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    return [Launch(_precond_in_kernel, (n, n_chunks), (x, sigma, y, c_noise, d, sigma_data),
                   dict(KIND=kind, ACC=acc(x, y), BLOCK=block, num_warps=num_warps))]


def backward_launches(gy, sigma, addend, gx, kind: int, sigma_data: float, *, sms=None, block=None) -> list[Launch]:
    """``addend`` is an empty tensor when there is none."""
    n, d = samples(gy)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    return [Launch(_precond_in_bwd_kernel, (n, n_chunks), (gy, sigma, addend, gx, d, sigma_data),
                   dict(KIND=kind, HAS_ADD=addend.numel() > 0, ACC=acc(gy, gx), BLOCK=block, num_warps=num_warps))]
