"""The fused losses' NaN rule, in plain PyTorch: a sample with a NaN in any input contributes zero loss and zero
gradient.  This is the official loop's boolean-index drop, written with ``torch.where`` so there is no host
sync and no dynamic shape.  The inputs of a dropped row are zeroed *before* any arithmetic, so no NaN reaches
autograd."""
from __future__ import annotations

import torch


def rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as ``[N, D]``."""
    return t.reshape(t.shape[0], -1)


def nan_free_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """Bool [N]: True where no input has a NaN anywhere in the sample."""
    bad = torch.zeros(tensors[0].shape[0], dtype=torch.bool, device=tensors[0].device)
    for t in tensors:
        bad = bad | rows(t).isnan().any(dim=1)
    return ~bad


def kept_rows(keep: torch.Tensor, dtype: torch.dtype, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor as ``[N, D]`` in ``dtype``, with the rows that are not kept set to 0."""
    return tuple(torch.where(keep[:, None], rows(t).to(dtype), 0) for t in tensors)
