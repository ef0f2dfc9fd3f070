"""The two declarations every fused op is made of: its kernel ops and its descriptor.

**Kernel op** (:class:`KernelOp`, declared with :func:`kernel_op`).  One schema, written once here in Python,
defines two operators: ``sidkernels::NAME_triton`` (implemented by a *plan*: a Python function that checks the
arguments, allocates the outputs and returns them with the :class:`sidkernels._triton.Launch` records that
fill them, which the registry runs inside the tensors' device; the compile-only lowering check compiles the
same records instead) and
``sidkernels::NAME_cuda`` (implemented in C++ by ``csrc/bindings/NAME.cpp`` under the CUDA dispatch key; the
extension only implements, it defines nothing).  Both share one exact fake (the function that allocates the
outputs, which the Triton implementation also calls: the fake is the allocator) and one autograd formula,
whose backward calls the backward kernel ops of the forward's own backend (``ctx.backend``).  A backward
returns the gradients of the leading inputs only; the ``None`` of the remaining (non-tensor) arguments are
added from the schema.

**Descriptor** (:class:`Op`).  Everything the rest of the library needs to know about a fused op lives in
one place, its module under :mod:`sidkernels.ops`: the public function, its reference, its kernel ops, the
dtype roles and traffic of the byte model, the inputs of the benchmarks and of the self-check, and the cases
of the opcheck, gradcheck, lowering and memcheck suites.  :data:`sidkernels.ops.OPS` is the registry; every
list of ops anywhere else is derived from it.

Contract of every kernel op: tensor inputs are sample-major (contiguous or channels_last, see
:mod:`sidkernels.ops._layout`) and share one layout; outputs take the first input's layout.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Optional

import torch

from sidkernels._triton import run, sm_count
from sidkernels.ops._traffic import MODES

NAMESPACE = "sidkernels"
KERNEL_BACKENDS = ("triton", "cuda")

# Normalised max error allowed per dtype, max|actual - expected| <= TOLERANCE * max|expected|: the tests'
# and the self-check's tolerance (bf16/fp16 rounding of outputs; fp32 reductions).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}

_LIB = torch.library.Library(NAMESPACE, "FRAGMENT")


@dataclasses.dataclass(frozen=True)
class KernelOp:
    """A kernel op: schema, the exact fake (the outputs' allocator), the Triton plan, autograd."""
    name: str
    schema: str                               # "(Tensor x, ...) -> (Tensor, ...)", without the name
    outputs: Callable                         # fake and allocator: allocates the outputs of one call
    plan: Callable                            # (sms, *schema arguments) -> (outputs, [Launch, ...])
    setup_context: Optional[Callable] = None  # (ctx, inputs, output); ctx.backend is set before it runs
    backward: Optional[Callable] = None       # (ctx, *grad_outputs) -> gradients of the leading inputs

    def qualname(self, backend: str) -> str:
        return f"{NAMESPACE}::{self.name}_{backend}"

    def variant(self, backend: str) -> torch._ops.OpOverload:
        """The ``torch.ops`` handle of this op's ``backend`` variant (``"triton"`` or ``"cuda"``)."""
        if backend not in KERNEL_BACKENDS:
            raise ValueError(f"backend must be one of {KERNEL_BACKENDS}, got {backend!r}")
        return getattr(getattr(torch.ops, NAMESPACE), f"{self.name}_{backend}").default


_KERNELS: dict[str, KernelOp] = {}


def _pad_gradients(backward: Callable) -> Callable:
    def padded(ctx, *grads):
        out = backward(ctx, *grads)
        out = out if isinstance(out, tuple) else (out,)
        return out + (None,) * (len(ctx.needs_input_grad) - len(out))
    return padded


def _setup_on(backend: str, setup: Callable) -> Callable:
    def setup_context(ctx, inputs, output):
        ctx.backend = backend
        setup(ctx, inputs, output)
    return setup_context


def _triton_impl(plan: Callable) -> Callable:
    """The Triton implementation of a plan: its launches run on the first tensor argument's device."""
    def impl(*args):
        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        outputs, launches = plan(sm_count(device), *args)
        run(launches, device)
        return outputs
    return impl


def kernel_op(name: str, schema: str, *, outputs: Callable, plan: Callable, setup_context: Callable | None = None,
              backward: Callable | None = None) -> KernelOp:
    """Declare kernel op ``name``: define its Triton and CUDA variants with ``schema``, implement the Triton one
    by ``plan`` and register the fake (``outputs``) and the autograd (``setup_context``, ``backward``) on both."""
    if name in _KERNELS:
        raise RuntimeError(f"kernel op {name!r} is declared twice")
    if (setup_context is None) != (backward is None):
        raise ValueError(f"kernel op {name!r}: give both setup_context and backward, or neither")
    op = KernelOp(name, schema, outputs, plan, setup_context, backward)
    torch.library.custom_op(op.qualname("triton"), _triton_impl(plan), mutates_args=(), schema=schema)
    torch.library.define(op.qualname("cuda"), schema, lib=_LIB)
    for backend in KERNEL_BACKENDS:
        torch.library.register_fake(op.qualname(backend), outputs, lib=_LIB if backend == "cuda" else None)
        if backward is not None:
            torch.library.register_autograd(op.qualname(backend), _pad_gradients(backward),
                                            setup_context=_setup_on(backend, setup_context),
                                            lib=_LIB if backend == "cuda" else None)
    _KERNELS[name] = op
    return op


def kernel_ops() -> dict[str, KernelOp]:
    """Every declared kernel op by name."""
    return dict(_KERNELS)


@dataclasses.dataclass(frozen=True)
class Op:
    """The descriptor of one fused op (public name = kernel-op name = module name)."""
    name: str
    public: Callable            # the public function (validation, backend choice, layout, reduction)
    reference: Callable         # the plain PyTorch reference (``backend="torch"``, the tests' oracle)
    kernels: tuple              # the KernelOps this op owns, forward first
    roles: tuple                # dtype roles of its big tensors (keywords of :meth:`traffic`)
    passes: Callable            # (n, d, role dtypes) -> (forward Traffic, backward Traffic): the byte model
    example: Callable           # (shape, dtype, device) -> inputs as in training (benchmarks, self-check)
    call: Callable              # (inputs, backend) -> tuple of outputs through the public function
    eager: Callable             # (*inputs) -> tuple of outputs: the reference alone (benchmark baselines)
    kernel_cases: Callable      # (shape, dtype, device) -> {case: (KernelOp, args)}: opcheck, lowering, memcheck
    gradcheck_cases: Callable   # (device) -> {case: (fn, fp64 inputs)}
    check: Optional[Callable] = None  # (inputs, backend) -> [(label, actual, expected)]; None: compare with fp64
    tolerance: Mapping = dataclasses.field(default_factory=lambda: dict(TOLERANCE))

    def traffic(self, mode: str, shape, dtype: torch.dtype = torch.float32, **role_dtypes):
        """Tensors read and written in ``mode`` (forward, backward, full) for inputs of ``shape``; every dtype
        role is ``dtype`` unless given by keyword."""
        unknown = set(role_dtypes) - set(self.roles)
        if unknown:
            raise ValueError(f"{self.name} has dtype roles {self.roles}, not {sorted(unknown)}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        shape = tuple(shape)
        fwd, bwd = self.passes(shape[0], math.prod(shape[1:]), {role: role_dtypes.get(role, dtype) for role in self.roles})
        return {"forward": fwd, "backward": bwd, "full": fwd + bwd}[mode]
