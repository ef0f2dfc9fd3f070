"""The memory-layout contract between callers, the kernel ops and their fakes.

Kernels address each sample as one dense block of D elements at ``n * D``.  That holds for contiguous
tensors and for channels_last ones, so tensors that share one such layout are passed as they are and the
outputs take that layout (``empty_like``); anything else (slices, mixed layouts, expanded gradients) is
copied to contiguous first, by the caller (:func:`sample_major`), before a kernel op is called.
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


def check_sample_major(op: str, *tensors: torch.Tensor) -> None:
    """Kernel-side guard of the contract (a clear error instead of reading the wrong elements)."""
    if not _sample_dense(tensors[0]) or any(t.stride() != tensors[0].stride() for t in tensors[1:]):
        raise ValueError(f"sidkernels::{op}: tensor inputs must share one contiguous or channels_last layout; "
                         f"got strides {[t.stride() for t in tensors]} (call sample_major first)")


def empty_rows(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A per-sample vector ``[N]`` on ``t``'s device."""
    return t.new_empty((t.shape[0],), dtype=dtype)


def nothing(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The empty tensor that stands for an output that was not asked for (or an absent optional input)."""
    return t.new_empty((0,), dtype=dtype or t.dtype)


def acc_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Dtype of the per-sample outputs and of the kernels' math: fp64 if any input is fp64, else fp32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
