"""Pieces shared by the Triton kernels: launch configuration and in-kernel EDM coefficients.

Every kernel sees its tensors as ``[N, D]`` sample-major memory (contiguous or channels_last: each
sample's D elements are one dense block starting at ``n * D``) and runs on a 2-D grid
``(N, cdiv(D, BLOCK))``: one program per (sample, chunk), so a long sample is split over several
programs and a small batch still fills the GPU.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from sidkernels._backend import triton_interpreting

MAX_BLOCK = 4096
MIN_BLOCK = 256
MAX_GRID_Y = 65535


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def launch_config(n: int, d: int, device: torch.device, block: int | None = None):
    """Pick ``(BLOCK, num_warps, n_chunks)`` for an ``[n, d]`` problem.

    The block is the next power of two of ``d`` capped at 4096; on a GPU it is halved (down to 256) until
    there are at least four programs per SM.  Under the interpreter the largest block is used, since cost
    there is per program.  ``block`` overrides the choice (tests use it to show results do not depend on it).
    """
    if block is None:
        block = min(triton.next_power_of_2(d), MAX_BLOCK)
        if device.type == "cuda" and not triton_interpreting():
            target = 4 * _sm_count(device.index if device.index is not None else torch.cuda.current_device())
            while block > MIN_BLOCK and n * triton.cdiv(d, block) < target:
                block //= 2
    n_chunks = triton.cdiv(d, block)
    while n_chunks > MAX_GRID_Y:
        block *= 2
        n_chunks = triton.cdiv(d, block)
    num_warps = max(1, min(block // 512, 8))
    return block, num_warps, n_chunks


def acc_dtype(*tensors: torch.Tensor):
    """Triton accumulation dtype: fp64 if any tensor is fp64 (for gradcheck), else fp32."""
    return tl.float64 if any(t.dtype == torch.float64 for t in tensors) else tl.float32


@triton.jit
def log1p(u):
    """Accurate ln(1 + u) for small u (Goldberg's trick: the rounding of 1 + u cancels)."""
    w = 1.0 + u
    return tl.where(w == 1.0, u, tl.log(w) * (u / (w - 1.0)))


@triton.jit
def precond_coefficients(s, sigma_data, KIND: tl.constexpr):
    """(c_skip, c_out, c_in) of SID.md 5.1 at sigma ``s``. KIND: 0 edm, 1 vp, 2 ve."""
    if KIND == 0:
        c_in = tl.math.rsqrt(s * s + sigma_data * sigma_data)
        c_skip = sigma_data * sigma_data * c_in * c_in
        c_out = s * sigma_data * c_in
    elif KIND == 1:
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
    """c_noise of SID.md 5.1: edm ln(s)/4, vp (M-1) sigma_vp^-1(s), ve ln(s/2)."""
    if KIND == 0:
        c = tl.log(s) * 0.25
    elif KIND == 1:
        # beta_d = 19.9, beta_min = 0.1, M = 1000
        c = 999.0 * (tl.sqrt(0.01 + 39.8 * log1p(s * s)) - 0.1) / 19.9
    else:
        c = tl.log(s * 0.5)
    return c
