"""Shared test utilities: tolerances per dtype and input factories."""
from __future__ import annotations

import torch

from sidkernels.ops._registry import TOLERANCE as TOL  # max|actual - expected| <= TOL * max|expected| (+ tiny)

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, tol=None):
    """Compare with a tolerance set by the coarsest dtype involved, relative to the expected scale."""
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    tol = tol if tol is not None else TOL[dtype or actual.dtype]
    a, e = actual.double(), expected.double()
    assert torch.equal(a.isnan(), e.isnan()), "NaN pattern differs"
    a, e = a.nan_to_num(), e.nan_to_num()
    scale = e.abs().max().item() if e.numel() else 0.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= tol * scale + 1e-12, f"max abs err {err:.3e} > {tol:.1e} * scale {scale:.3e}"


def randn(shape, dtype=torch.float32, device="cpu", requires_grad=False, layout="contiguous"):
    """Random input in the requested layout: contiguous, channels_last or a non-contiguous slice."""
    if layout == "strided":
        t = torch.randn(*shape[:-1], 2 * shape[-1], device=device).to(dtype)[..., ::2]
    else:
        t = torch.randn(shape, device=device).to(dtype)
        if layout == "channels_last":
            t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)
