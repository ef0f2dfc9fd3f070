"""Plain PyTorch reference of SIGN's per-sample distances (docs/ops.md, "Distances").

With r = a - b over a sample's D elements (math in fp32, fp64 when an input is fp64):

    l2            d = mean_i r_i^2
    l1            d = mean_i |r_i|
    pseudo_huber  d = sqrt(sum_i r_i^2 + c^2) - c          (iCT: c = 0.00054 sqrt(D))

NaN is not dropped here (unlike the SiD losses): a sample with a NaN has distance NaN, as in plain PyTorch.
"""
from __future__ import annotations

import math

import torch

from sidkernels._abi import DISTANCES, acc_dtype


def pseudo_huber_c(d: int) -> float:
    """iCT's pseudo-Huber constant for samples of ``d`` elements: ``0.00054 sqrt(d)``."""
    return 0.00054 * math.sqrt(d)


def sample_distance_ref(a: torch.Tensor, b: torch.Tensor, kind: str = "l2", c: float | None = None) -> torch.Tensor:
    """Per-sample distance ``[N]`` between ``a`` and ``b`` (``c``: the pseudo-Huber constant, iCT's by default)."""
    dtype = acc_dtype(a.dtype, b.dtype)
    diff = (a.to(dtype) - b.to(dtype)).flatten(1)
    if kind == "l2":
        return diff.square().mean(1)
    if kind == "l1":
        return diff.abs().mean(1)
    if kind == "pseudo_huber":
        c = pseudo_huber_c(diff.shape[1]) if c is None else c
        return (diff.square().sum(1) + c * c).sqrt() - c
    raise ValueError(f"kind must be one of {DISTANCES}, got {kind!r}")
