"""The memory-layout contract between the custom ops, their fakes and the kernels.

Kernels address each sample as one dense block of D elements at ``n * D``.  That holds for contiguous
tensors and for channels_last ones, so tensors that share one such layout are passed as they are and the
outputs take that layout (``empty_like``); anything else (slices, mixed layouts, expanded gradients) is
copied to contiguous first.  Real implementations and fakes both call :func:`sample_major`, so fake
outputs have exactly the real strides.
"""
from __future__ import annotations

import torch


def _sample_dense(t: torch.Tensor) -> bool:
    if t.is_contiguous():
        return True
    if t.dim() == 4:
        return t.is_contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.is_contiguous(memory_format=torch.channels_last_3d)
    return False


def sample_major(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Return the tensors in one shared sample-dense layout (as they are when possible)."""
    first = tensors[0]
    if _sample_dense(first) and all(t.stride() == first.stride() for t in tensors[1:]):
        return tensors
    return tuple(t.contiguous() for t in tensors)


def empty_rows(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A per-sample vector ``[N]`` on ``t``'s device."""
    return t.new_empty((t.shape[0],), dtype=dtype)


def nothing(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The empty tensor that stands for an output that was not asked for."""
    return t.new_empty((0,), dtype=dtype or t.dtype)
