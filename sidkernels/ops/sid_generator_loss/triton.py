"""Fused SiD generator loss in Triton: per-sample loss and all three gradients, one pass.

With a = teacher output, b = fake-score output, x = generator sample (any float dtypes, fp32 math):

    w_n    = max(mean_i |x - a|, clip)                    (stop-gradient; 1 without normalisation)
    loss_n = sum_i (a - b) * ((a - x) - alpha (a - b)) / w_n
    dl/da  = [ (a - x) + (1 - 2 alpha)(a - b) ] / w_n
    dl/db  = [ -(a - x) + 2 alpha (a - b) ] / w_n
    dl/dx  = -(a - b) / w_n                                (direct term)

w_n needs the whole sample, the gradients need w_n: so the kernel writes the *bracketed* gradients (no
1/w_n) in the same pass that reads a, b, x once, and fp32 partials (sum|x - a|, the loss numerator, the NaN
count) per (sample, chunk) into ``PART[3, N, C]`` (C chunks per sample).  A tiny finalize kernel turns the
partials into loss_n and the per-sample factor ``scale_n = 1/w_n`` (0 for a sample with any NaN in a, b or
x: the official drop).  The backward multiplies the bracketed gradients by ``grad_out_n * scale_n``
(:mod:`sidkernels.ops.rowscale`), which it has to do anyway, so 1/w_n costs no extra pass.  When a sample
fits one chunk the forward kernel finalises it directly and the second launch is skipped.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sidkernels._triton import Launch, acc, finalize_grid, launch_config, samples, sum_partials


@triton.jit
def _finish(abs_sum, num, nan_count, D, clip, NORMALIZE: tl.constexpr):
    if NORMALIZE:
        w = tl.maximum(abs_sum / D, clip)
    else:
        w = abs_sum * 0.0 + 1.0
    keep = nan_count == 0
    return tl.where(keep, num / w, 0.0), tl.where(keep, 1.0 / w, 0.0)


@triton.jit(do_not_specialize=["N", "C"])
def _sid_loss_fwd_kernel(A, B, X, GA, GB, GX, PART, LOSS, SCALE, N, D, C, alpha, clip,
                         GRAD_A: tl.constexpr, GRAD_B: tl.constexpr, GRAD_X: tl.constexpr,
                         NORMALIZE: tl.constexpr, ONE_CHUNK: tl.constexpr,
                         ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    alpha = tl.cast(alpha, ACC)
    a = tl.load(A + idx, mask=mask, other=0.0).to(ACC)
    b = tl.load(B + idx, mask=mask, other=0.0).to(ACC)
    x = tl.load(X + idx, mask=mask, other=0.0).to(ACC)
    d_ax = a - x
    d_ab = a - b
    abs_sum = tl.sum(tl.abs(d_ax), axis=0)
    num = tl.sum(d_ab * (d_ax - alpha * d_ab), axis=0)
    nan_count = tl.sum(((a != a) | (b != b) | (x != x)).to(ACC), axis=0)
    if GRAD_A:
        tl.store(GA + idx, (d_ax + (1.0 - 2.0 * alpha) * d_ab).to(GA.dtype.element_ty), mask=mask)
    if GRAD_B:
        tl.store(GB + idx, (2.0 * alpha * d_ab - d_ax).to(GB.dtype.element_ty), mask=mask)
    if GRAD_X:
        tl.store(GX + idx, (-d_ab).to(GX.dtype.element_ty), mask=mask)
    if ONE_CHUNK:
        loss, scale = _finish(abs_sum, num, nan_count, D, tl.cast(clip, ACC), NORMALIZE)
        tl.store(LOSS + n, loss.to(LOSS.dtype.element_ty))
        tl.store(SCALE + n, scale.to(SCALE.dtype.element_ty))
    else:
        part = PART + n * C + chunk
        tl.store(part, abs_sum)
        tl.store(part + N * C, num)
        tl.store(part + 2 * N * C, nan_count)


@triton.jit(do_not_specialize=["N", "C"])
def _sid_loss_finalize_kernel(PART, LOSS, SCALE, N, D, C, clip, NORMALIZE: tl.constexpr,
                              ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    abs_sum = sum_partials(PART, rows, 0, N, C, ACC, BLOCK_N, BLOCK_C)
    num = sum_partials(PART, rows, 1, N, C, ACC, BLOCK_N, BLOCK_C)
    nan_count = sum_partials(PART, rows, 2, N, C, ACC, BLOCK_N, BLOCK_C)
    loss, scale = _finish(abs_sum, num, nan_count, D, tl.cast(clip, ACC), NORMALIZE)
    tl.store(LOSS + rows, loss.to(LOSS.dtype.element_ty), mask=rows < N)
    tl.store(SCALE + rows, scale.to(SCALE.dtype.element_ty), mask=rows < N)


def launches(a, b, x, ga, gb, gx, loss, scale, alpha: float, clip: float, normalize: bool, *, sms=None,
             block=None) -> list[Launch]:
    """On sample-major a, b, x; a gradient output that is an empty tensor is not written."""
    n, d = samples(a)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    acc_t = acc(a, b, x)
    part = torch.empty((3, n, n_chunks), dtype=loss.dtype, device=a.device) if n_chunks > 1 else loss
    out = [Launch(_sid_loss_fwd_kernel, (n, n_chunks),
                  (a, b, x, ga, gb, gx, part, loss, scale, n, d, n_chunks, alpha, clip),
                  dict(GRAD_A=ga.numel() > 0, GRAD_B=gb.numel() > 0, GRAD_X=gx.numel() > 0, NORMALIZE=normalize,
                       ONE_CHUNK=n_chunks == 1, ACC=acc_t, BLOCK=block, num_warps=num_warps))]
    if n_chunks > 1:
        grid, block_n, block_c = finalize_grid(n, n_chunks)
        out.append(Launch(_sid_loss_finalize_kernel, grid, (part, loss, scale, n, d, n_chunks, clip),
                          dict(NORMALIZE=normalize, ACC=acc_t, BLOCK_N=block_n, BLOCK_C=block_c)))
    return out
