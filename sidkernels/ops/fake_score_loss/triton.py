"""Fused fake-score (EDM denoising) loss in Triton: per-sample loss and gradient, one pass.

With D = denoised, y = target and the EDM weight lambda_n = (sigma_n^2 + sd^2) / (sigma_n sd)^2:

    loss_n = lambda_n * sum_i (D - y)^2
    dl/dD  = 2 lambda_n (D - y),   dl/dy = -2 lambda_n (D - y)

The kernel reads D and y once, writes the residual r = D - y (the one tensor both gradients come from)
and fp32 partials (sum r^2, NaN count) per (sample, chunk); the finalize step writes loss_n and the
per-sample factor ``scale_n = 2 lambda_n`` (0 for a sample with a NaN in D or y).  The backward is
``grad_out_n * scale_n * (+-r)`` (:mod:`sidkernels.ops.rowscale`).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sidkernels._triton import Launch, acc, finalize_grid, launch_config, samples, sum_partials


@triton.jit
def _finish(sq_sum, nan_count, s, sigma_data):
    lam = (s * s + sigma_data * sigma_data) / (s * sigma_data * s * sigma_data)
    keep = nan_count == 0
    return tl.where(keep, lam * sq_sum, 0.0), tl.where(keep, 2.0 * lam, 0.0)


@triton.jit(do_not_specialize=["N", "C"])
def _fake_loss_fwd_kernel(DEN, Y, SIGMA, R, PART, LOSS, SCALE, N, D, C, sigma_data,
                          WRITE_R: tl.constexpr, ONE_CHUNK: tl.constexpr, ACC: tl.constexpr,
                          BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    den = tl.load(DEN + idx, mask=mask, other=0.0).to(ACC)
    y = tl.load(Y + idx, mask=mask, other=0.0).to(ACC)
    r = den - y
    sq_sum = tl.sum(r * r, axis=0)
    nan_count = tl.sum(((den != den) | (y != y)).to(ACC), axis=0)
    if WRITE_R:
        tl.store(R + idx, r.to(R.dtype.element_ty), mask=mask)
    if ONE_CHUNK:
        loss, scale = _finish(sq_sum, nan_count, tl.load(SIGMA + n).to(ACC), tl.cast(sigma_data, ACC))
        tl.store(LOSS + n, loss.to(LOSS.dtype.element_ty))
        tl.store(SCALE + n, scale.to(SCALE.dtype.element_ty))
    else:
        part = PART + n * C + chunk
        tl.store(part, sq_sum)
        tl.store(part + N * C, nan_count)


@triton.jit(do_not_specialize=["N", "C"])
def _fake_loss_finalize_kernel(PART, SIGMA, LOSS, SCALE, N, C, sigma_data,
                               ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    sq_sum = sum_partials(PART, rows, 0, N, C, ACC, BLOCK_N, BLOCK_C)
    nan_count = sum_partials(PART, rows, 1, N, C, ACC, BLOCK_N, BLOCK_C)
    s = tl.load(SIGMA + rows, mask=rows < N, other=1.0).to(ACC)
    loss, scale = _finish(sq_sum, nan_count, s, tl.cast(sigma_data, ACC))
    tl.store(LOSS + rows, loss.to(LOSS.dtype.element_ty), mask=rows < N)
    tl.store(SCALE + rows, scale.to(SCALE.dtype.element_ty), mask=rows < N)


def launches(den, y, sigma, r, loss, scale, sigma_data: float, *, sms=None, block=None) -> list[Launch]:
    """On sample-major ``den``, ``y``; ``r`` is an empty tensor when no gradient is needed."""
    n, d = samples(den)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    acc_t = acc(den, y)
    part = torch.empty((2, n, n_chunks), dtype=loss.dtype, device=den.device) if n_chunks > 1 else loss
    out = [Launch(_fake_loss_fwd_kernel, (n, n_chunks),
                  (den, y, sigma, r, part, loss, scale, n, d, n_chunks, sigma_data),
                  dict(WRITE_R=r.numel() > 0, ONE_CHUNK=n_chunks == 1, ACC=acc_t, BLOCK=block, num_warps=num_warps))]
    if n_chunks > 1:
        grid, block_n, block_c = finalize_grid(n, n_chunks)
        out.append(Launch(_fake_loss_finalize_kernel, grid, (part, sigma, loss, scale, n, n_chunks, sigma_data),
                          dict(ACC=acc_t, BLOCK_N=block_n, BLOCK_C=block_c)))
    return out
