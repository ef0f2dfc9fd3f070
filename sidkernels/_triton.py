"""What the Triton kernels of every op share: launch geometry, the launch record, and jit helpers.

Every kernel sees its tensors as ``[N, D]`` sample-major memory (contiguous or channels_last: each sample's
D elements are one dense block starting at ``n * D``) and runs on a 2-D grid ``(N, cdiv(D, BLOCK))``: one
program per (sample, chunk), so a long sample is split over several programs and a small batch still fills
the GPU.  A launcher builds :class:`Launch` records and :func:`run` launches them inside the tensors' CUDA
device, because Triton launches on the *current* device (the compile-only lowering check builds the same
records and compiles them instead).  Nothing here knows about backends or validation.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import Any, Sequence

import torch
import triton
import triton.language as tl

from sidkernels import _abi

MAX_BLOCK = 4096
MIN_BLOCK = 256      # the smallest block a GPU launch shrinks to
SMALLEST_BLOCK = 16  # tiny samples: a block is never smaller (the noise kernel draws normals by fours)
MIN_WARPS = 2        # a one-warp CTA caps occupancy at the per-SM CTA limit
MAX_WARPS = 8
MAX_GRID_Y = 65535
PROGRAMS_PER_SM = 4

# The ABI as Triton compile-time constants (sidkernels/_abi.py is the source).
EDM = tl.constexpr(_abi.PRECOND_CODE["edm"])
VP = tl.constexpr(_abi.PRECOND_CODE["vp"])
L1 = tl.constexpr(_abi.DISTANCE_CODE["l1"])
PSEUDO_HUBER = tl.constexpr(_abi.DISTANCE_CODE["pseudo_huber"])
VP_BETA_D = tl.constexpr(_abi.VP_BETA_D)
VP_BETA_MIN = tl.constexpr(_abi.VP_BETA_MIN)
VP_M = tl.constexpr(_abi.VP_M)


def interpreting() -> bool:
    """True when Triton kernels run under ``TRITON_INTERPRET=1`` (on the CPU)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int | None:
    """Streaming multiprocessors of ``device`` for the launch geometry (None off a GPU or when interpreting)."""
    if device.type != "cuda" or interpreting():
        return None
    return _multiprocessors(device.index if device.index is not None else torch.cuda.current_device())


def launch_config(n: int, d: int, sms: int | None, block: int | None = None) -> tuple[int, int, int]:
    """``(BLOCK, num_warps, n_chunks)`` for an ``[n, d]`` problem on a GPU with ``sms`` multiprocessors.

    The block is the next power of two of ``d`` in [16, 4096]; on a GPU (``sms`` given) it is halved (down to
    256) until there are at least four programs per SM.  Without a GPU (the interpreter) the largest block is
    used, since cost there is per program.  ``block`` overrides the choice (tests use it to show results do
    not depend on it).  Warps: one per 512 elements, at least two, at most eight.
    """
    if block is None:
        block = max(SMALLEST_BLOCK, min(triton.next_power_of_2(d), MAX_BLOCK))
        if sms is not None:
            while block > MIN_BLOCK and n * triton.cdiv(d, block) < PROGRAMS_PER_SM * sms:
                block //= 2
    n_chunks = triton.cdiv(d, block)
    while n_chunks > MAX_GRID_Y:
        block *= 2
        n_chunks = triton.cdiv(d, block)
    num_warps = max(MIN_WARPS, min(block // 512, MAX_WARPS))
    return block, num_warps, n_chunks


def acc(*tensors: torch.Tensor):
    """The Triton dtype of the kernels' math (:func:`sidkernels._abi.acc_dtype` of the tensors' dtypes)."""
    return tl.float64 if _abi.acc_dtype(*(t.dtype for t in tensors)) == torch.float64 else tl.float32


def samples(t: torch.Tensor) -> tuple[int, int]:
    """``(N, D)`` of a sample-major tensor."""
    return t.shape[0], t.numel() // t.shape[0]


@dataclasses.dataclass(frozen=True)
class Launch:
    """One kernel launch: ``kernel[grid](*args, **kwargs)``."""
    kernel: Any
    grid: tuple[int, ...]
    args: tuple
    kwargs: dict


def run(launches: Sequence[Launch], device: torch.device) -> None:
    """Launch ``launches`` in order inside ``device`` (Triton uses the current device and its stream)."""
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        for launch in launches:
            launch.kernel[launch.grid](*launch.args, **launch.kwargs)


# ------------------------------------------------------------------ jit helpers
@triton.jit
def log1p(u):
    """Accurate ln(1 + u) for small u (Goldberg's trick: the rounding of 1 + u cancels)."""
    w = 1.0 + u
    return tl.where(w == 1.0, u, tl.log(w) * (u / (w - 1.0)))


@triton.jit
def precond_coefficients(s, sigma_data, KIND: tl.constexpr):
    """(c_skip, c_out, c_in) at sigma ``s`` for preconditioning kind KIND (edm, vp, ve; docs/ops.md)."""
    if KIND == EDM:
        c_in = tl.math.rsqrt(s * s + sigma_data * sigma_data)
        c_skip = sigma_data * sigma_data * c_in * c_in
        c_out = s * sigma_data * c_in
    elif KIND == VP:
        c_in = tl.math.rsqrt(s * s + 1.0)
        c_skip = s * 0.0 + 1.0
        c_out = -s
    else:
        c_in = s * 0.0 + 1.0
        c_skip = s * 0.0 + 1.0
        c_out = s
    return c_skip, c_out, c_in


@triton.jit
def precond_c_noise(s, KIND: tl.constexpr):
    """c_noise at sigma ``s``: edm ln(s)/4; vp (M-1) (sqrt(beta_min^2 + 2 beta_d ln(1 + s^2)) - beta_min) / beta_d;
    ve ln(s/2)."""
    if KIND == EDM:
        c = tl.log(s) * 0.25
    elif KIND == VP:
        c = (VP_M - 1.0) * (tl.sqrt(VP_BETA_MIN * VP_BETA_MIN + 2.0 * VP_BETA_D * log1p(s * s)) - VP_BETA_MIN)
        c = c / VP_BETA_D
    else:
        c = tl.log(s * 0.5)
    return c


@triton.jit
def sum_partials(PART, rows, K_INDEX: tl.constexpr, N, C, ACC: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """The second stage of the per-sample reductions: ``PART[K_INDEX, rows, :]`` summed over the C chunks of
    each sample in a fixed order (no float atomics: bitwise reproducible), a [BLOCK_N] vector.

    The tiles are added elementwise in the loop and reduced once after it.  (A reduction inside the loop,
    whose result a caller then uses twice, trips an assertion of Triton 3.6's OptimizeThreadLocality pass.)
    """
    total = tl.zeros([BLOCK_N, BLOCK_C], dtype=ACC)
    row_mask = rows < N
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ptrs = PART + K_INDEX * N * C + rows[:, None] * C + cols[None, :]
        total += tl.load(ptrs, mask=row_mask[:, None] & (cols[None, :] < C), other=0.0).to(ACC)
    return tl.sum(total, axis=1)


def finalize_grid(n: int, c: int) -> tuple[tuple[int], int, int]:
    """Grid and block sizes of a finalize kernel over N samples with C chunks each."""
    block_n = min(triton.next_power_of_2(n), 64)
    block_c = min(triton.next_power_of_2(c), 64)
    return (triton.cdiv(n, block_n),), block_n, block_c
