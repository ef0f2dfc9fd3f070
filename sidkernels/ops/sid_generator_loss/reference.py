"""Plain PyTorch reference of the SiD generator loss (docs/ops.md, "SiD generator loss")."""
from __future__ import annotations

import torch

from sidkernels._abi import acc_dtype
from sidkernels.ops._nan import kept_rows, nan_free_rows


def sid_generator_loss_ref(teacher_out, fake_out, x_g, alpha=1.2, *, weight_clip=1e-5, normalize=True):
    """Per-sample SiD generator loss ``[N]``.

    With a = teacher_out, b = fake_out, x = x_g (all upcast to fp32, or fp64 when any input is fp64):

        w     = max(mean|x - a|, weight_clip)       (stop-gradient; 1 when normalize=False)
        loss  = sum_pixels (a - b) * ((a - x) - alpha * (a - b)) / w

    A sample with a NaN in any input contributes 0 loss and 0 gradient.
    """
    keep = nan_free_rows(teacher_out, fake_out, x_g)
    a, b, x = kept_rows(keep, acc_dtype(teacher_out.dtype, fake_out.dtype, x_g.dtype), teacher_out, fake_out, x_g)
    if normalize:
        with torch.no_grad():
            w = (x - a).abs().mean(dim=1).clamp_min(weight_clip)
    else:
        w = torch.ones_like(a[:, 0])
    diff = a - b
    return (diff * ((a - x) - alpha * diff)).sum(dim=1) / w
