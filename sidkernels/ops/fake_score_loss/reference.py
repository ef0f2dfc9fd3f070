"""Plain PyTorch reference of the fake-score (EDM denoising) loss (docs/ops.md, "Fake-score loss")."""
from __future__ import annotations

import torch

from sidkernels._abi import SIGMA_DATA, acc_dtype
from sidkernels.ops._nan import kept_rows, nan_free_rows


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2."""
    return (sigma * sigma + sigma_data ** 2) / (sigma * sigma_data) ** 2


def fake_score_loss_ref(denoised, target, sigma, *, sigma_data=SIGMA_DATA):
    """Per-sample EDM denoising loss ``lambda(sigma) * sum_pixels (D - y)^2`` (math in fp32/fp64); a sample with
    a NaN in D or y contributes 0 loss and 0 gradient."""
    acc = acc_dtype(denoised.dtype, target.dtype)
    keep = nan_free_rows(denoised, target)
    d, y = kept_rows(keep, acc, denoised, target)
    lam = edm_loss_weight(sigma.reshape(-1).to(acc), sigma_data)
    return lam * torch.where(keep, ((d - y) ** 2).sum(dim=1), 0)
