"""SIGN's per-sample distances between ``a`` and ``b`` (docs/ops.md, "Distances"), r = a - b over each sample:
``"l2"`` mean r^2, ``"l1"`` mean |r|, ``"pseudo_huber"`` sqrt(sum r^2 + c^2) - c.

Kernel ops: ``sample_distance`` -> (dist[N], scale[N]) and its backward ``sample_distance_bwd`` -> (grad_a,
grad_b), which re-reads a and b (no saved residual).  NaN propagates as in plain PyTorch.
"""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels import _checks as check
from sidkernels._abi import DISTANCE_CODE, DISTANCES, acc_dtype
from sidkernels._backend import resolve_backend
from sidkernels.ops._common import REDUCTIONS, any_fp64, reduce
from sidkernels.ops._layout import check_sample_major, empty_rows, nothing, sample_major
from sidkernels.ops._registry import Op, kernel_op
from sidkernels.ops._traffic import Shape, Traffic
from sidkernels.ops.sample_distance import triton as kernels
from sidkernels.ops.sample_distance.reference import pseudo_huber_c, sample_distance_ref


# ------------------------------------------------------------------ sample_distance_bwd: grad_out scale phi(a - b)
def _bwd_outputs(grad_out, scale, a, b, kind, a_dtype, b_dtype):
    g_a = torch.empty_like(a, dtype=a_dtype) if a_dtype is not None else nothing(a)
    g_b = torch.empty_like(a, dtype=b_dtype) if b_dtype is not None else nothing(a)
    return g_a, g_b


def _bwd_plan(sms, grad_out: torch.Tensor, scale: torch.Tensor, a: torch.Tensor, b: torch.Tensor, kind: int,
                a_dtype: Optional[torch.dtype], b_dtype: Optional[torch.dtype]):
    """``(grad_out[n] scale[n] phi(a - b), -...)`` in ``a_dtype`` / ``b_dtype``; a gradient whose dtype is
    None is not computed (empty).  ``grad_out`` may be strided (an expanded gradient has stride 0)."""
    check_sample_major("sample_distance_bwd", a, b)
    g_a, g_b = _bwd_outputs(grad_out, scale, a, b, kind, a_dtype, b_dtype)
    return (g_a, g_b), kernels.backward_launches(grad_out, scale, a, b, g_a, g_b, kind, sms=sms)


BACKWARD = kernel_op(
    "sample_distance_bwd", "(Tensor grad_out, Tensor scale, Tensor a, Tensor b, int kind, ScalarType? a_dtype, "
                           "ScalarType? b_dtype) -> (Tensor, Tensor)",
    outputs=_bwd_outputs, plan=_bwd_plan)


# ------------------------------------------------------------------ sample_distance: d_n and scale_n
def _outputs(a, b, kind, c):
    acc = acc_dtype(a.dtype, b.dtype)
    return empty_rows(a, acc), empty_rows(a, acc)


def _setup(ctx, inputs, output):
    a, b, kind, _ = inputs
    ctx.save_for_backward(a, b, output[1])
    ctx.kind, ctx.dtypes = kind, (a.dtype, b.dtype)
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, g_dist, unused):
    a, b, scale = ctx.saved_tensors
    need_a, need_b = ctx.needs_input_grad[:2]
    g_a, g_b = BACKWARD.variant(ctx.backend)(g_dist, scale, a, b, ctx.kind, ctx.dtypes[0] if need_a else None,
                                             ctx.dtypes[1] if need_b else None)
    return (g_a if need_a else None), (g_b if need_b else None)


def _plan(sms, a: torch.Tensor, b: torch.Tensor, kind: int, c: float):
    """Per-sample distance ``d_n`` of ``kind`` (pseudo-Huber constant ``c``) and the backward's factor ``scale_n``."""
    check_sample_major("sample_distance", a, b)
    dist, scale = _outputs(a, b, kind, c)
    return (dist, scale), kernels.forward_launches(a, b, dist, scale, kind, c, sms=sms)


KERNEL = kernel_op("sample_distance", "(Tensor a, Tensor b, int kind, float c) -> (Tensor, Tensor)",
                   outputs=_outputs, plan=_plan, setup_context=_setup, backward=_backward)


# ------------------------------------------------------------------ the public function
def sample_distance(a, b, kind="l2", *, c=None, reduction="none", backend="auto"):
    """Per-sample distance between ``a`` and ``b``, with r = a - b over each sample:

    ``"l2"``: mean r^2;  ``"l1"``: mean |r|;  ``"pseudo_huber"``: sqrt(sum r^2 + c^2) - c, with iCT's
    c = 0.00054 sqrt(D) unless ``c`` (> 0) is given.  ``reduction``: ``"none"`` -> [N], ``"sum"``, ``"mean"``.
    Gradients flow to both inputs (in their dtypes); a NaN propagates as in plain PyTorch (no drop).
    The result is fp32 (fp64 when an input is fp64).
    """
    check.float_tensor("a", a)
    check.float_tensor("b", b)
    check.batch("a", a)
    check.same_shape("b", b, "a", a)
    check.same_device("b", b, "a", a)
    check.choice("kind", kind, DISTANCES)
    check.choice("reduction", reduction, REDUCTIONS)
    if kind == "pseudo_huber":
        c = pseudo_huber_c(a[0].numel()) if c is None else c
        if not c > 0:
            raise ValueError(f"c must be > 0 for the pseudo-Huber distance, got {c}")
    elif c is not None:
        raise ValueError(f"c is the pseudo-Huber constant; kind {kind!r} takes none, got c={c}")
    backend = resolve_backend(backend, a.device, "sample_distance", fp64=any_fp64(a, b))
    if backend == "torch":
        per_sample = sample_distance_ref(a, b, kind, c)
    else:
        per_sample = KERNEL.variant(backend)(*sample_major(a, b), DISTANCE_CODE[kind], float(c or 0.0))[0]
    return reduce(per_sample, reduction)


# ------------------------------------------------------------------ descriptor
KIND = "l2"  # SIGN's default for every distance term


def _passes(n, d, dt):
    """A gradient for the network output a only (b is data or a stop-gradient target, as in SIGN's terms); the
    backward re-reads a and b instead of a stored residual."""
    s = Shape(n, d)
    acc = acc_dtype(dt["a"], dt["b"])
    inputs = (s.big("a", dt["a"]), s.big("b", dt["b"]))
    fwd = Traffic(inputs, (s.rows("dist", acc), s.rows("scale", acc)))
    bwd = Traffic((s.rows("g_dist", acc), s.rows("scale", acc)) + inputs, (s.big("g_a", dt["a"]),))
    return fwd, bwd


def _example(shape, dtype, device):
    return (torch.randn(shape, device=device, dtype=dtype).requires_grad_(True),
            torch.randn(shape, device=device, dtype=dtype))


def _kernel_cases(shape, dtype, device):
    n = shape[0]
    a = torch.randn(shape, device=device).to(dtype)
    b = torch.randn(shape, device=device).to(torch.bfloat16 if dtype != torch.float64 else dtype)
    rows = torch.rand(n, device=device)
    cases = {kind: (KERNEL, (a.clone().requires_grad_(True), b, code, 0.01)) for kind, code in DISTANCE_CODE.items()}
    cases["bwd"] = (BACKWARD, (torch.ones((), device=device).expand(n), rows, a, b, 0, dtype, b.dtype))
    cases["bwd_l1_a"] = (BACKWARD, (rows, rows, a, b, 1, dtype, None))
    return cases


def _gradcheck_cases(device):
    """Every kind and reduction; pseudo-Huber with a c exact in fp32 (scalars are fp32 kernel arguments)."""
    inputs = tuple(torch.randn(3, 2, 5, dtype=torch.float64, device=device, requires_grad=True) for _ in range(2))
    return {f"{kind}-{reduction}": (
        lambda a, b, kind=kind, c=c, reduction=reduction: sample_distance(a, b, kind, c=c, reduction=reduction,
                                                                          backend="triton"), inputs)
        for kind, c in (("l2", None), ("l1", None), ("pseudo_huber", 0.25)) for reduction in ("none", "mean")}


OP = Op(
    name="sample_distance", public=sample_distance, reference=sample_distance_ref, kernels=(KERNEL, BACKWARD),
    roles=("a", "b"), passes=_passes, example=_example,
    call=lambda inputs, backend: (sample_distance(*inputs, KIND, reduction="sum", backend=backend),),
    eager=lambda a, b: (sample_distance_ref(a, b, KIND).sum(),),
    kernel_cases=_kernel_cases, gradcheck_cases=_gradcheck_cases)
