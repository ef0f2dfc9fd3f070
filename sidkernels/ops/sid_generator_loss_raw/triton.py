"""The SiD generator loss fused from the networks' raw outputs, in Triton.

With F_phi, F_psi the teacher's and the fake score's raw outputs at x_t (any float dtypes, e.g. bf16 under
autocast), x_g the generator sample and the per-sample preconditioning coefficients c_skip, c_out at sigma:

    a - b  = c_out (F_phi - F_psi),   a - x_g = c_skip x_t + c_out F_phi - x_g         (fp32, in registers)
    w_n    = max(mean_i |a - x_g|, clip),   loss_n = sum_i (a - b)((a - x_g) - alpha (a - b)) / w_n
    dl/dF_phi = c_out [(a - x_g) + (1 - 2 alpha)(a - b)] / w_n     dl/dF_psi = c_out [2 alpha (a - b) - (a - x_g)] / w_n
    dl/dx_t   = c_skip (a - b) / w_n                                dl/dx_g   = -(a - b) / w_n

The forward reads the four inputs once and writes only per-sample fp32 values (partials of sum|a - x_g|, the
numerator and the NaN count per (sample, chunk), then loss_n and scale_n = 1/w_n, 0 for a sample with a NaN:
the official drop).  The backward reads them once more and writes each requested gradient once, scaled by
grad_out_n * scale_n: no a, b or D is ever stored.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sidkernels._triton import (Launch, acc, finalize_grid, launch_config, precond_coefficients, samples,
                                    sum_partials)


@triton.jit
def _finish(abs_sum, num, nan_count, D, clip, NORMALIZE: tl.constexpr):
    if NORMALIZE:
        w = tl.maximum(abs_sum / D, clip)
    else:
        w = abs_sum * 0.0 + 1.0
    keep = nan_count == 0
    return tl.where(keep, num / w, 0.0), tl.where(keep, 1.0 / w, 0.0)


@triton.jit
def _differences(FP, FQ, XT, XG, SIGMA, n, idx, mask, sigma_data, KIND: tl.constexpr, ACC: tl.constexpr):
    """(a - b, a - x_g, c_skip, c_out, NaN flags) of the elements ``idx`` of sample n."""
    c_skip, c_out, _ = precond_coefficients(tl.load(SIGMA + n).to(ACC), tl.cast(sigma_data, ACC), KIND)
    fp = tl.load(FP + idx, mask=mask, other=0.0).to(ACC)
    fq = tl.load(FQ + idx, mask=mask, other=0.0).to(ACC)
    xt = tl.load(XT + idx, mask=mask, other=0.0).to(ACC)
    xg = tl.load(XG + idx, mask=mask, other=0.0).to(ACC)
    bad = (fp != fp) | (fq != fq) | (xt != xt) | (xg != xg)
    return c_out * (fp - fq), c_skip * xt + c_out * fp - xg, c_skip, c_out, bad


@triton.jit(do_not_specialize=["N", "C"])
def _sid_raw_fwd_kernel(FP, FQ, XT, XG, SIGMA, PART, LOSS, SCALE, N, D, C, sigma_data, alpha, clip,
                        KIND: tl.constexpr, NORMALIZE: tl.constexpr, ONE_CHUNK: tl.constexpr, ACC: tl.constexpr,
                        BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    d_ab, d_ax, _, _, bad = _differences(FP, FQ, XT, XG, SIGMA, n, n * D + offs, mask, sigma_data, KIND, ACC)
    abs_sum = tl.sum(tl.abs(d_ax), axis=0)
    num = tl.sum(d_ab * (d_ax - tl.cast(alpha, ACC) * d_ab), axis=0)
    nan_count = tl.sum(bad.to(ACC), axis=0)
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
def _sid_raw_finalize_kernel(PART, LOSS, SCALE, N, D, C, clip, NORMALIZE: tl.constexpr, ACC: tl.constexpr,
                             BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    abs_sum = sum_partials(PART, rows, 0, N, C, ACC, BLOCK_N, BLOCK_C)
    num = sum_partials(PART, rows, 1, N, C, ACC, BLOCK_N, BLOCK_C)
    nan_count = sum_partials(PART, rows, 2, N, C, ACC, BLOCK_N, BLOCK_C)
    loss, scale = _finish(abs_sum, num, nan_count, D, tl.cast(clip, ACC), NORMALIZE)
    tl.store(LOSS + rows, loss.to(LOSS.dtype.element_ty), mask=rows < N)
    tl.store(SCALE + rows, scale.to(SCALE.dtype.element_ty), mask=rows < N)


@triton.jit
def _sid_raw_bwd_kernel(GO, go_stride, SCALE, FP, FQ, XT, XG, SIGMA, GFP, GFQ, GXT, GXG, D, sigma_data, alpha,
                        KIND: tl.constexpr, NEED_FP: tl.constexpr, NEED_FQ: tl.constexpr, NEED_XT: tl.constexpr,
                        NEED_XG: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    scale = tl.load(SCALE + n).to(ACC)
    factor = tl.load(GO + n * go_stride).to(ACC) * scale
    d_ab, d_ax, c_skip, c_out, _ = _differences(FP, FQ, XT, XG, SIGMA, n, idx, mask, sigma_data, KIND, ACC)
    drop = scale == 0.0  # a dropped sample (its inputs may hold NaN): zero gradient
    alpha = tl.cast(alpha, ACC)
    if NEED_FP:
        g = tl.where(drop, 0.0, factor * c_out * (d_ax + (1.0 - 2.0 * alpha) * d_ab))
        tl.store(GFP + idx, g.to(GFP.dtype.element_ty), mask=mask)
    if NEED_FQ:
        g = tl.where(drop, 0.0, factor * c_out * (2.0 * alpha * d_ab - d_ax))
        tl.store(GFQ + idx, g.to(GFQ.dtype.element_ty), mask=mask)
    if NEED_XT:
        tl.store(GXT + idx, tl.where(drop, 0.0, factor * c_skip * d_ab).to(GXT.dtype.element_ty), mask=mask)
    if NEED_XG:
        tl.store(GXG + idx, tl.where(drop, 0.0, -factor * d_ab).to(GXG.dtype.element_ty), mask=mask)


def forward_launches(fp, fq, xt, xg, sigma, loss, scale, kind: int, sigma_data: float, alpha: float, clip: float,
                     normalize: bool, *, sms=None, block=None) -> list[Launch]:
    n, d = samples(xg)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    acc_t = acc(fp, fq, xt, xg)
    part = torch.empty((3, n, n_chunks), dtype=loss.dtype, device=xg.device) if n_chunks > 1 else loss
    out = [Launch(_sid_raw_fwd_kernel, (n, n_chunks),
                  (fp, fq, xt, xg, sigma, part, loss, scale, n, d, n_chunks, sigma_data, alpha, clip),
                  dict(KIND=kind, NORMALIZE=normalize, ONE_CHUNK=n_chunks == 1, ACC=acc_t, BLOCK=block,
                       num_warps=num_warps))]
    if n_chunks > 1:
        grid, block_n, block_c = finalize_grid(n, n_chunks)
        out.append(Launch(_sid_raw_finalize_kernel, grid, (part, loss, scale, n, d, n_chunks, clip),
                          dict(NORMALIZE=normalize, ACC=acc_t, BLOCK_N=block_n, BLOCK_C=block_c)))
    return out


def backward_launches(grad_out, scale, fp, fq, xt, xg, sigma, gfp, gfq, gxt, gxg, kind: int, sigma_data: float,
                      alpha: float, *, sms=None, block=None) -> list[Launch]:
    """An empty gradient output is not written."""
    n, d = samples(xg)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    return [Launch(_sid_raw_bwd_kernel, (n, n_chunks),
                   (grad_out, grad_out.stride(0), scale, fp, fq, xt, xg, sigma, gfp, gfq, gxt, gxg, d, sigma_data,
                    alpha),
                   dict(KIND=kind, NEED_FP=gfp.numel() > 0, NEED_FQ=gfq.numel() > 0, NEED_XT=gxt.numel() > 0,
                        NEED_XG=gxg.numel() > 0, ACC=acc(fp, fq, xt, xg, scale), BLOCK=block, num_warps=num_warps))]
