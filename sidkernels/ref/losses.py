"""Plain PyTorch references for the SiD losses (SID.md sections 1, 1a and 2).

Both return the per-sample loss, shape [N], summed over each sample's elements.  A sample with a NaN in
any input contributes zero loss and zero gradient (the official boolean-index drop, written with
``torch.where`` so there is no host sync and no dynamic shape).  The inputs of a dropped row are zeroed
*before* any arithmetic so no NaN reaches autograd.
"""
from __future__ import annotations

import torch


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _acc_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def nan_free_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """Bool [N]: True where no input has a NaN anywhere in the sample."""
    bad = torch.zeros(tensors[0].shape[0], dtype=torch.bool, device=tensors[0].device)
    for t in tensors:
        bad = bad | _rows(t).isnan().any(dim=1)
    return ~bad


def sid_generator_loss_ref(teacher_out, fake_out, x_g, alpha=1.2, *, weight_clip=1e-5, normalize=True):
    """Per-sample SiD generator loss.

    With a = teacher_out, b = fake_out, x = x_g (all upcast to fp32, or fp64 when any input is fp64):

        w     = max(mean|x - a|, weight_clip)       (stop-gradient; 1 when normalize=False)
        loss  = sum_pixels (a - b) * ((a - x) - alpha * (a - b)) / w
    """
    acc = _acc_dtype(teacher_out, fake_out, x_g)
    keep = nan_free_rows(teacher_out, fake_out, x_g)
    a, b, x = (torch.where(keep[:, None], _rows(t).to(acc), 0) for t in (teacher_out, fake_out, x_g))
    if normalize:
        with torch.no_grad():
            w = (x - a).abs().mean(dim=1).clamp_min(weight_clip)
    else:
        w = torch.ones_like(a[:, 0])
    diff = a - b
    return (diff * ((a - x) - alpha * diff)).sum(dim=1) / w


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """EDM weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2."""
    return (sigma * sigma + sigma_data ** 2) / (sigma * sigma_data) ** 2


def fake_score_loss_ref(denoised, target, sigma, *, sigma_data=0.5):
    """Per-sample EDM denoising loss ``lambda(sigma) * sum_pixels (D - y)^2`` (math in fp32/fp64)."""
    acc = _acc_dtype(denoised, target)
    keep = nan_free_rows(denoised, target)
    d, y = (torch.where(keep[:, None], _rows(t).to(acc), 0) for t in (denoised, target))
    lam = edm_loss_weight(sigma.reshape(-1).to(acc), sigma_data)
    return lam * torch.where(keep, ((d - y) ** 2).sum(dim=1), 0)
