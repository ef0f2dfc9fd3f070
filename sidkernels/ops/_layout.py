"""The memory-layout contract between callers, the kernel ops and their fakes.

Kernels address each sample as one dense block of D elements at ``n * D``.  That holds for contiguous
tensors and for channels_last ones, so tensors that share one such layout are passed as they are and the
outputs take that layout (``empty_like``); anything else (slices, mixed layouts, expanded gradients) is
copied to contiguous first, by the caller (:func:`sample_major`), before a kernel op is called.

Two tensors share a layout when their strides agree on every dimension of size > 1: the stride of a
dimension of size 1 never enters an address, and torch leaves it arbitrary (a one-channel channels_last
tensor and its contiguous twin differ only there).
"""
from __future__ import annotations

import torch

from sidkernels import _abi


def sample_dense(t: torch.Tensor) -> bool:
    """True when every sample of ``t`` is one dense block at ``n * D`` (contiguous or channels_last)."""
    if t.is_contiguous():
        return True
    if t.dim() == 4:
        return t.is_contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.is_contiguous(memory_format=torch.channels_last_3d)
    return False


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` have one shape and the same strides on every dimension of size > 1."""
    return a.shape == b.shape and all(sa == sb for sa, sb, size in zip(a.stride(), b.stride(), a.shape) if size > 1)


def sample_major(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Return the tensors in one shared sample-dense layout (as they are when possible)."""
    first = tensors[0]
    if sample_dense(first) and all(same_layout(t, first) for t in tensors[1:]):
        return tensors
    return tuple(t.contiguous() for t in tensors)


def check_sample_major(op: str, *tensors: torch.Tensor) -> None:
    """Kernel-side guard of the contract (a clear error instead of reading the wrong elements)."""
    if not sample_dense(tensors[0]) or not all(same_layout(t, tensors[0]) for t in tensors[1:]):
        raise ValueError(f"sidkernels::{op}: tensor inputs must share one contiguous or channels_last layout; "
                         f"got shapes {[tuple(t.shape) for t in tensors]} with strides "
                         f"{[t.stride() for t in tensors]} (call sample_major first)")


def empty_rows(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A per-sample vector ``[N]`` on ``t``'s device."""
    return t.new_empty((t.shape[0],), dtype=dtype)


def nothing(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The empty tensor that stands for an output that was not asked for (or an absent optional input)."""
    return t.new_empty((0,), dtype=dtype or t.dtype)


def acc_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Dtype of the per-sample outputs and of the kernels' math (:func:`sidkernels._abi.acc_dtype`)."""
    return _abi.acc_dtype(*(t.dtype for t in tensors))
