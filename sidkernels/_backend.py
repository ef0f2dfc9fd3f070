"""Backend selection for every sidkernels op.

``"torch"`` runs the plain PyTorch reference (differentiable by autograd, fused by Inductor under
``torch.compile``); ``"triton"`` runs the fused Triton kernels registered as ``torch.library`` custom
ops; ``"cuda"`` runs their CUDA C++ twins (same schemas, fakes and autograd; built from ``csrc/`` on
first use, see :mod:`sidkernels.cuda_ext`).

``"auto"`` picks the reference for CPU tensors and a fused backend for CUDA tensors: per op, Triton or CUDA
C++ by the measured rule of :mod:`sidkernels.backend_rule` (the faster one in the GPU benchmark results;
Triton where there are none).  The default for ``backend="auto"`` calls can be pinned with
:func:`use_backend` or the ``SIDKERNELS_BACKEND`` environment variable.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from sidkernels import backend_rule, cuda_ext

BACKENDS = ("auto", "torch", "triton", "cuda")

_default = os.environ.get("SIDKERNELS_BACKEND", "auto")


def _check_name(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


_check_name(_default)


def get_backend() -> str:
    """The backend that ``backend="auto"`` calls resolve through (``"auto"`` unless pinned)."""
    return _default


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Context manager: ops called with ``backend="auto"`` inside use ``backend``."""
    global _default
    previous, _default = _default, _check_name(backend)
    try:
        yield
    finally:
        _default = previous


def triton_interpreting() -> bool:
    """True when Triton kernels run under ``TRITON_INTERPRET=1`` (CPU tensors allowed)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str, device: torch.device, op: str | None = None) -> str:
    """Map a requested backend to the concrete one used for tensors on ``device`` by public function ``op``."""
    backend = _check_name(backend)
    if backend == "auto":
        backend = _default
    if backend == "auto":
        if device.type != "cuda":
            return "torch"
        if op is None or backend_rule.preferred(op) != "cuda":
            return "triton"
        if torch.compiler.is_compiling():  # no build while tracing: use it only if an eager call loaded it
            return "cuda" if cuda_ext.is_loaded() else "triton"
        return "cuda" if backend_rule.cuda_loads() else "triton"
    if backend == "triton" and device.type != "cuda" and not triton_interpreting():
        raise RuntimeError(
            f"backend='triton' got tensors on {device}; Triton kernels need CUDA tensors, or "
            "TRITON_INTERPRET=1 set before sidkernels is imported to interpret them on the CPU")
    if backend == "cuda":
        if device.type != "cuda" and not (device.type == "cpu" and cuda_ext.is_host_emulation()):
            raise RuntimeError(f"backend='cuda' got tensors on {device}; the CUDA C++ kernels need CUDA tensors")
        cuda_ext.require()
    return backend
