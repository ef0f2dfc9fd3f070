"""Fused per-sample distances in Triton: forward in one read of a and b, backward in one pass that writes both
gradients.

With r = a - b over a sample's D elements (any float dtypes, fp32 math) and KIND l2, l1, pseudo-Huber:

    S_n     = sum_i r^2 (l2, pseudo-Huber)  or  sum_i |r| (l1)
    d_n     = S_n / D                                    (l2, l1)
            = sqrt(S_n + c^2) - c = S_n / (sqrt(S_n + c^2) + c)   (pseudo-Huber; the second form has no
                                                                    cancellation when S_n << c^2)
    dd/da   = scale_n * phi(r),  dd/db = -dd/da,  scale_n = 2/D (l2), 1/D (l1), 1/sqrt(S_n + c^2) (pseudo-Huber),
              phi(r) = r (l2, pseudo-Huber) or sign(r) (l1, sign(NaN) = 0 as torch.sign)

The forward writes only d_n and scale_n (per-sample fp32): the backward re-reads a and b instead of a saved
residual, so forward + backward moves 2 reads + (2 reads + 2 writes) and keeps no [N, D] tensor alive.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sidkernels._abi import DISTANCE_CODE
from sidkernels._triton import L1, PSEUDO_HUBER, Launch, acc, finalize_grid, launch_config, samples, sum_partials


@triton.jit
def _finish(s, D, c, KIND: tl.constexpr):
    if KIND == PSEUDO_HUBER:
        q = tl.sqrt(s + c * c)
        return s / (q + c), 1.0 / q
    d = tl.zeros_like(s) + D  # the scale of l2 / l1 stays finite for a NaN sample, as in autograd
    if KIND == L1:
        return s / d, 1.0 / d
    return s / d, 2.0 / d


@triton.jit
def _residual(A, B, idx, mask, ACC: tl.constexpr):
    """r = a - b in the accumulation dtype (0 outside ``mask``)."""
    return tl.load(A + idx, mask=mask, other=0.0).to(ACC) - tl.load(B + idx, mask=mask, other=0.0).to(ACC)


@triton.jit(do_not_specialize=["N", "C"])
def _distance_fwd_kernel(A, B, PART, DIST, SCALE, N, D, C, c, KIND: tl.constexpr, ONE_CHUNK: tl.constexpr,
                         ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    r = _residual(A, B, idx, mask, ACC)
    if KIND == L1:
        s = tl.sum(tl.abs(r), axis=0)
    else:
        s = tl.sum(r * r, axis=0)
    if ONE_CHUNK:
        dist, scale = _finish(s, D, tl.cast(c, ACC), KIND)
        tl.store(DIST + n, dist.to(DIST.dtype.element_ty))
        tl.store(SCALE + n, scale.to(SCALE.dtype.element_ty))
    else:
        tl.store(PART + n * C + chunk, s)


@triton.jit(do_not_specialize=["N", "C"])
def _distance_finalize_kernel(PART, DIST, SCALE, N, D, C, c, KIND: tl.constexpr, ACC: tl.constexpr,
                              BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    s = sum_partials(PART, rows, 0, N, C, ACC, BLOCK_N, BLOCK_C)
    dist, scale = _finish(s, D, tl.cast(c, ACC), KIND)
    tl.store(DIST + rows, dist.to(DIST.dtype.element_ty), mask=rows < N)
    tl.store(SCALE + rows, scale.to(SCALE.dtype.element_ty), mask=rows < N)


@triton.jit
def _distance_bwd_kernel(GO, go_stride, SCALE, A, B, GA, GB, D, SIGN: tl.constexpr, GRAD_A: tl.constexpr,
                         GRAD_B: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    factor = tl.load(GO + n * go_stride).to(ACC) * tl.load(SCALE + n).to(ACC)
    r = _residual(A, B, idx, mask, ACC)
    if SIGN:
        r = tl.where(r > 0.0, 1.0, tl.where(r < 0.0, -1.0, 0.0)).to(ACC)
    g = factor * r
    if GRAD_A:
        tl.store(GA + idx, g.to(GA.dtype.element_ty), mask=mask)
    if GRAD_B:
        tl.store(GB + idx, (-g).to(GB.dtype.element_ty), mask=mask)


def forward_launches(a, b, dist, scale, kind: int, c: float, *, sms=None, block=None) -> list[Launch]:
    """On sample-major ``a``, ``b``: per-sample ``dist`` and ``scale`` (see the module docstring)."""
    n, d = samples(a)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    acc_t = acc(a, b)
    part = torch.empty((1, n, n_chunks), dtype=dist.dtype, device=a.device) if n_chunks > 1 else dist
    out = [Launch(_distance_fwd_kernel, (n, n_chunks), (a, b, part, dist, scale, n, d, n_chunks, c),
                  dict(KIND=kind, ONE_CHUNK=n_chunks == 1, ACC=acc_t, BLOCK=block, num_warps=num_warps))]
    if n_chunks > 1:
        grid, block_n, block_c = finalize_grid(n, n_chunks)
        out.append(Launch(_distance_finalize_kernel, grid, (part, dist, scale, n, d, n_chunks, c),
                          dict(KIND=kind, ACC=acc_t, BLOCK_N=block_n, BLOCK_C=block_c)))
    return out


def backward_launches(grad_out, scale, a, b, ga, gb, kind: int, *, sms=None, block=None) -> list[Launch]:
    """``ga = grad_out[n] scale[n] phi(a - b)``, ``gb = -ga``; an empty ``ga`` or ``gb`` is not written."""
    n, d = samples(a)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    return [Launch(_distance_bwd_kernel, (n, n_chunks), (grad_out, grad_out.stride(0), scale, a, b, ga, gb, d),
                   dict(SIGN=kind == DISTANCE_CODE["l1"], GRAD_A=ga.numel() > 0, GRAD_B=gb.numel() > 0,
                        ACC=acc(a, b, scale), BLOCK=block, num_warps=num_warps))]
