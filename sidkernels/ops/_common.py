"""Pieces the public functions of the ops share: reductions, the RNG seed, gradient bookkeeping."""
from __future__ import annotations

import torch

REDUCTIONS = ("none", "sum", "mean")


def reduce(per_sample: torch.Tensor, reduction: str, loss_scale: float = 1.0) -> torch.Tensor:
    """``per_sample`` as is (``"none"``), summed or averaged over the batch, times ``loss_scale``."""
    if reduction == "none":
        out = per_sample
    elif reduction == "sum":
        out = per_sample.sum()
    else:
        out = per_sample.mean()
    return out if loss_scale == 1.0 else out * loss_scale


def wants_grad(t: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and t.requires_grad


def any_fp64(*tensors: torch.Tensor) -> bool:
    return any(t.dtype == torch.float64 for t in tensors)


def seed_tensor(seed, device: torch.device) -> torch.Tensor:
    """The kernels' RNG seed as an int64 ``[1]`` tensor on ``device``, built there without a host copy:
    ``None`` draws it from torch's generator of ``device`` (so ``torch.manual_seed`` governs it)."""
    if seed is None:
        return torch.randint(0, 2 ** 62, (1,), device=device, dtype=torch.int64)
    if isinstance(seed, bool) or not isinstance(seed, (int, torch.Tensor)):
        raise TypeError(f"seed must be None, an int or an int64 tensor, got {type(seed).__name__}")
    if isinstance(seed, int):
        return torch.full((1,), seed, device=device, dtype=torch.int64)
    if seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError(f"seed must be an int or an int64 tensor with one element, got {seed.dtype} "
                        f"with shape {tuple(seed.shape)}")
    if seed.device != device:
        raise ValueError(f"seed is on {seed.device} but x is on {device}")
    return seed.reshape(1)
