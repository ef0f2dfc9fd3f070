"""Plain PyTorch reference of the per-sample distances of SIGN (SIGN.md 2.3, 4.4).

With r = a - b over a sample's D elements (math in fp32, fp64 when an input is fp64):

    l2            d = mean_i r_i^2
    l1            d = mean_i |r_i|
    pseudo_huber  d = sqrt(sum_i r_i^2 + c^2) - c          (iCT: c = 0.00054 sqrt(D))

NaN is not dropped here (unlike the SiD losses): a sample with a NaN has distance NaN, as in plain PyTorch.
"""
from __future__ import annotations

import math

import torch

DISTANCES = ("l2", "l1", "pseudo_huber")
DISTANCE_CODE = {name: code for code, name in enumerate(DISTANCES)}


def pseudo_huber_c(d: int) -> float:
    """iCT's pseudo-Huber constant for samples of ``d`` elements: ``0.00054 sqrt(d)``."""
    return 0.00054 * math.sqrt(d)


def sample_distance_ref(a: torch.Tensor, b: torch.Tensor, kind: str = "l2", c: float | None = None) -> torch.Tensor:
    """Per-sample distance ``[N]`` between ``a`` and ``b`` (``c``: the pseudo-Huber constant, iCT's by default)."""
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    diff = (a.to(dtype) - b.to(dtype)).flatten(1)
    if kind == "l2":
        return diff.square().mean(1)
    if kind == "l1":
        return diff.abs().mean(1)
    if kind == "pseudo_huber":
        c = pseudo_huber_c(diff.shape[1]) if c is None else c
        return (diff.square().sum(1) + c * c).sqrt() - c
    raise ValueError(f"kind must be one of {DISTANCES}, got {kind!r}")
