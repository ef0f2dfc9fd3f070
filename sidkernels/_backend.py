"""Which implementation an op call runs: backend names, the default for ``backend="auto"``, the measured rule.

``"torch"`` runs the plain PyTorch reference (differentiable by autograd, fused by Inductor under
``torch.compile``); ``"triton"`` runs the fused Triton kernels registered as ``torch.library`` custom ops;
``"cuda"`` runs their CUDA C++ twins (same schemas, fakes and autograd; built from ``csrc/`` on first use, see
:mod:`sidkernels.cuda_ext`).

``"auto"`` picks the reference for CPU tensors and a fused backend for CUDA tensors: per op, Triton or CUDA
C++ by the measured rule in ``auto_backend.json`` (the faster one in the GPU benchmark results; Triton where
there are none, for fp64 inputs, which the CUDA kernels refuse, and where the extension cannot load).
``sidkernels bench --report`` derives the rule from the results CSV (:mod:`sidkernels.bench.auto_rule`).

The default behind ``backend="auto"`` is per thread and per asyncio task (a ``ContextVar``): pin it with
:func:`use_backend` or the ``SIDKERNELS_BACKEND`` environment variable.  A function compiled with
``torch.compile`` keeps the default it was traced with.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import warnings
from pathlib import Path
from typing import Iterator

import torch

from sidkernels import cuda_ext
from sidkernels._triton import interpreting

BACKENDS = ("auto", "torch", "triton", "cuda")
RULE_FILE = Path(__file__).with_name("auto_backend.json")


def _check_name(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


_default: contextvars.ContextVar[str] = contextvars.ContextVar(
    "sidkernels_backend", default=_check_name(os.environ.get("SIDKERNELS_BACKEND", "auto")))


@torch.compiler.assume_constant_result
def get_backend() -> str:
    """The backend that ``backend="auto"`` calls resolve through here (``"auto"`` unless pinned)."""
    return _default.get()


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Context manager: ops called with ``backend="auto"`` inside use ``backend`` (this thread/task only)."""
    token = _default.set(_check_name(backend))
    try:
        yield
    finally:
        _default.reset(token)


def read_rule(path: Path = RULE_FILE) -> dict:
    """A rule file's content (no file: no measurements, every op Triton)."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {"ops": {}}


RULE = read_rule()


def preferred(op: str) -> str:
    """The rule's backend for op ``op`` on CUDA tensors: ``"cuda"`` or ``"triton"``."""
    return "cuda" if RULE["ops"].get(op) == "cuda" else "triton"


@functools.lru_cache(maxsize=None)
def _cuda_loads() -> bool:
    """Whether the CUDA extension loads (building it if needed); warns once when it does not."""
    try:
        cuda_ext.load()
        return True
    except RuntimeError as exc:
        warnings.warn(f"backend='auto': the benchmark rule prefers CUDA C++ for some ops, but {exc}; using "
                      "Triton for them", RuntimeWarning, stacklevel=3)
        return False


def resolve_backend(backend: str, device: torch.device, op: str, *, fp64: bool = False) -> str:
    """The concrete backend (torch, triton, cuda) that a call of op ``op`` on ``device`` runs.

    ``fp64``: an input is fp64 (``auto`` then never picks the CUDA kernels, which take fp32/fp16/bf16).
    """
    backend = _check_name(backend)
    if backend == "auto":
        backend = get_backend()
    if backend == "auto":
        if device.type != "cuda":
            return "torch"
        if fp64 or preferred(op) != "cuda":
            return "triton"
        if torch.compiler.is_compiling():  # no build while tracing: use it only if an eager call loaded it
            return "cuda" if cuda_ext.is_loaded() else "triton"
        return "cuda" if _cuda_loads() else "triton"
    if backend == "triton" and device.type != "cuda" and not interpreting():
        raise RuntimeError(
            f"backend='triton' got tensors on {device}; Triton kernels need CUDA tensors, or "
            "TRITON_INTERPRET=1 set before sidkernels is imported to interpret them on the CPU")
    if backend == "cuda":
        if device.type != (cuda_ext.device_type() if cuda_ext.is_loaded() else "cuda"):
            raise RuntimeError(f"backend='cuda' got tensors on {device}; the CUDA C++ kernels need CUDA tensors")
        cuda_ext.require()
    return backend
