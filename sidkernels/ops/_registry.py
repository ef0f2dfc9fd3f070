"""One registry for the kernel ops of every backend.

Each kernel op ``NAME`` has one schema and one :class:`OpSpec` (fake, autograd) shared by its backend
variants ``sidkernels::NAME_triton`` (a Python ``custom_op`` over Triton) and ``sidkernels::NAME_cuda``
(defined by the CUDA C++ extension with the same schema).  The autograd of a variant calls the backward
ops of the same backend (``ctx.backend``).  Callers look ops up with :func:`kernel_op`.

Contract of every kernel op: tensor inputs are sample-major (contiguous or channels_last, see
:func:`sidkernels.ops._layout.sample_major`) and share one layout; outputs take the first input's layout.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

NAMESPACE = "sidkernels"
_ops: dict[tuple[str, str], Callable] = {}


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """Backend-independent parts of a kernel op: the exact fake, and optionally its autograd."""
    fake: Callable
    setup_context: Optional[Callable] = None  # (ctx, inputs, output); ctx.backend is set before it runs
    backward: Optional[Callable] = None       # (ctx, *grad_outputs)


def register(name: str, backend: str, spec: OpSpec) -> None:
    """Attach ``spec`` to the already-defined op ``sidkernels::{name}_{backend}`` and make it findable."""
    qualname = f"{NAMESPACE}::{name}_{backend}"
    torch.library.register_fake(qualname, spec.fake)
    if spec.backward is not None:
        def setup_context(ctx, inputs, output):
            ctx.backend = backend
            spec.setup_context(ctx, inputs, output)
        torch.library.register_autograd(qualname, spec.backward, setup_context=setup_context)
    _ops[name, backend] = getattr(getattr(torch.ops, NAMESPACE), f"{name}_{backend}").default


def define_triton(name: str, spec: OpSpec):
    """Decorator: define ``sidkernels::{name}_triton`` from a typed Python implementation and register it."""
    def wrap(impl):
        torch.library.custom_op(f"{NAMESPACE}::{name}_triton", impl, mutates_args=())
        register(name, "triton", spec)
        return impl
    return wrap


def kernel_op(name: str, backend: str) -> Callable:
    """The ``torch.ops`` handle of op ``name`` for ``backend``."""
    try:
        return _ops[name, backend]
    except KeyError:
        raise RuntimeError(f"no {backend!r} implementation of sidkernels op {name!r} is registered") from None


def registered_backends(name: str) -> list[str]:
    return sorted(b for n, b in _ops if n == name)
