"""Deterministic second stage of the per-sample loss kernels.

A loss kernel on an ``[N, D]`` problem split into C chunks per sample writes K fp32 partial sums per
(sample, chunk) into ``PART[K, N, C]``.  :func:`sum_partials` adds each sample's C partials in a fixed
order (no float atomics), so results are bitwise reproducible and independent of scheduling.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def sum_partials(PART, rows, K_INDEX: tl.constexpr, N, C, ACC: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """Sum ``PART[K_INDEX, rows, :]`` over the chunks: a [BLOCK_N] vector.

    The tiles are added elementwise in the loop and reduced once after it.  (A reduction inside the loop,
    whose result a caller then uses twice, trips an assertion of Triton 3.6's OptimizeThreadLocality pass:
    the pseudo-Huber finish uses the sum twice.)
    """
    acc = tl.zeros([BLOCK_N, BLOCK_C], dtype=ACC)
    row_mask = rows < N
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ptrs = PART + K_INDEX * N * C + rows[:, None] * C + cols[None, :]
        acc += tl.load(ptrs, mask=row_mask[:, None] & (cols[None, :] < C), other=0.0).to(ACC)
    return tl.sum(acc, axis=1)


def finalize_grid(n: int, c: int):
    """Grid and block sizes of a finalize kernel over N samples with C chunks each."""
    block_n = min(triton.next_power_of_2(n), 64)
    block_c = min(triton.next_power_of_2(c), 64)
    return (triton.cdiv(n, block_n),), block_n, block_c
