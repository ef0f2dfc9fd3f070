"""The SiD generator loss from denoiser outputs (docs/ops.md, "SiD generator loss"):
per sample ``sum (a - b) * ((a - x_g) - alpha (a - b)) / w``, ``w = max(mean|x_g - a|, clip)`` a stop-gradient.

Kernel op ``sid_generator_loss`` -> (loss[N], scale[N], h_a, h_b, h_x): the forward computes the per-sample
loss and the bracketed gradients in one pass (only ``loss`` is differentiable); the backward is
``rowscale(grad_out, scale, h)`` per needed gradient.  :mod:`sidkernels.ops.sid_generator_loss_raw` is the
same loss taken from the networks' raw outputs.
"""
from __future__ import annotations

import torch

from sidkernels import _checks as check
from sidkernels._abi import acc_dtype
from sidkernels._backend import resolve_backend
from sidkernels.ops import rowscale
from sidkernels.ops._common import REDUCTIONS, any_fp64, reduce, wants_grad
from sidkernels.ops._layout import check_sample_major, empty_rows, nothing, sample_major
from sidkernels.ops._registry import Op, kernel_op
from sidkernels.ops._traffic import Shape, Traffic
from sidkernels.ops.sid_generator_loss import triton as kernels
from sidkernels.ops.sid_generator_loss.reference import sid_generator_loss_ref


def _outputs(teacher_out, fake_out, x_g, alpha, weight_clip, normalize, grad_a, grad_b, grad_x):
    acc = acc_dtype(teacher_out.dtype, fake_out.dtype, x_g.dtype)
    grads = [torch.empty_like(t) if want else nothing(t)
             for t, want in ((teacher_out, grad_a), (fake_out, grad_b), (x_g, grad_x))]
    return (empty_rows(x_g, acc), empty_rows(x_g, acc), *grads)


def _setup(ctx, inputs, output):
    loss, scale, *saved = output
    ctx.save_for_backward(scale, *saved)
    ctx.dtypes = tuple(t.dtype for t in inputs[:3])
    ctx.mark_non_differentiable(scale, *saved)


def _backward(ctx, g_loss, *unused):
    scale, *saved = ctx.saved_tensors
    op = rowscale.KERNEL.variant(ctx.backend)
    return tuple(op(g_loss, scale, src, 1.0, dtype) if need else None
                 for src, dtype, need in zip(saved, ctx.dtypes, ctx.needs_input_grad[:3]))


def _plan(sms, teacher_out: torch.Tensor, fake_out: torch.Tensor, x_g: torch.Tensor, alpha: float, weight_clip: float,
            normalize: bool, grad_a: bool, grad_b: bool, grad_x: bool):
    check_sample_major("sid_generator_loss", teacher_out, fake_out, x_g)
    loss, scale, ga, gb, gx = _outputs(teacher_out, fake_out, x_g, alpha, weight_clip, normalize, grad_a, grad_b,
                                       grad_x)
    return (loss, scale, ga, gb, gx), kernels.launches(teacher_out, fake_out, x_g, ga, gb, gx, loss, scale, alpha,
                                                       weight_clip, normalize, sms=sms)


KERNEL = kernel_op(
    "sid_generator_loss",
    "(Tensor teacher_out, Tensor fake_out, Tensor x_g, float alpha, float weight_clip, bool normalize, "
    "bool grad_a, bool grad_b, bool grad_x) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    outputs=_outputs, plan=_plan, setup_context=_setup, backward=_backward)


# ------------------------------------------------------------------ the public function
def sid_generator_loss(teacher_out, fake_out, x_g, *, alpha=1.2, reduction="mean", loss_scale=1.0,
                       weight_clip=1e-5, normalize=True, backend="auto"):
    """SiD generator loss: per sample ``sum (a - b) * ((a - x_g) - alpha (a - b)) / w``.

    ``w = max(mean|x_g - a|, weight_clip)`` per sample, in fp32, treated as a constant (``normalize=False``
    uses w = 1).  A sample with a NaN in any input contributes zero loss and zero gradient.  ``reduction``:
    ``"none"`` -> [N]; ``"sum"``; ``"mean"`` over all N (a dropped sample counts as zero).  The official
    generator loss is ``sid_generator_loss(..., loss_scale=100)`` (``lsg / batch_gpu_total`` with mean).
    Gradients flow to all three inputs.  The loss is fp32 (fp64 when an input is fp64).
    """
    for name, t in (("teacher_out", teacher_out), ("fake_out", fake_out), ("x_g", x_g)):
        check.float_tensor(name, t)
    check.batch("x_g", x_g)
    for name, t in (("teacher_out", teacher_out), ("fake_out", fake_out)):
        check.same_shape(name, t, "x_g", x_g)
        check.same_device(name, t, "x_g", x_g)
    check.choice("reduction", reduction, REDUCTIONS)
    if not weight_clip > 0:
        raise ValueError(f"weight_clip must be > 0, got {weight_clip}")
    backend = resolve_backend(backend, x_g.device, "sid_generator_loss", fp64=any_fp64(teacher_out, fake_out, x_g))
    if backend == "torch":
        per_sample = sid_generator_loss_ref(teacher_out, fake_out, x_g, alpha, weight_clip=weight_clip,
                                            normalize=normalize)
    else:
        per_sample = KERNEL.variant(backend)(
            *sample_major(teacher_out, fake_out, x_g), float(alpha), float(weight_clip), bool(normalize),
            wants_grad(teacher_out), wants_grad(fake_out), wants_grad(x_g))[0]
    return reduce(per_sample, reduction, loss_scale)


# ------------------------------------------------------------------ descriptor
ALPHA = 1.2


def _passes(n, d, dt):
    """The forward writes the three bracketed gradients h_* (each in its input's dtype) in the pass that
    reads a, b, x; the backward rescales them per sample into g_*."""
    s = Shape(n, d)
    acc = acc_dtype(dt["a"], dt["b"], dt["x"])
    saved = tuple(s.big(f"h_{k}", dt[k]) for k in ("a", "b", "x"))
    fwd = Traffic(tuple(s.big(k, dt[k]) for k in ("a", "b", "x")), (s.rows("loss", acc), s.rows("scale", acc)) + saved)
    bwd = Traffic((s.rows("g_loss", acc), s.rows("scale", acc)) + saved, tuple(s.big(f"g_{k}", dt[k]) for k in "abx"))
    return fwd, bwd


def _example(shape, dtype, device):
    return tuple(torch.randn(shape, device=device, dtype=dtype).requires_grad_(True) for _ in range(3))


def _kernel_cases(shape, dtype, device):
    a, b, x = (torch.randn(shape, device=device).to(dtype) for _ in range(3))
    other = torch.bfloat16 if dtype != torch.float64 else dtype
    cases = {
        "all_grads": (KERNEL, (a.clone().requires_grad_(True), b.to(other).requires_grad_(True), x, 1.2, 1e-5,
                               True, True, True, False)),
        "grad_x_only": (KERNEL, (a, b, x, 1.0, 1e-5, False, False, False, True)),
    }
    return cases | rowscale.rowscale_cases(shape, dtype, device)


def _gradcheck_cases(device):
    """w is a stop-gradient, so finite differences see it move: check with w = 1 (normalize=False); the
    normalised gradient is checked against w held fixed in tests/ops/test_sid_generator_loss.py."""
    inputs = tuple(torch.randn(3, 2, 5, dtype=torch.float64, device=device, requires_grad=True) for _ in range(3))
    return {f"{reduction}-alpha{alpha}": (
        lambda a, b, x, alpha=alpha, reduction=reduction: sid_generator_loss(
            a, b, x, alpha=alpha, normalize=False, reduction=reduction, backend="triton"), inputs)
        for reduction in ("none", "mean") for alpha in (1.0, 1.2)}


OP = Op(
    name="sid_generator_loss", public=sid_generator_loss, reference=sid_generator_loss_ref,
    kernels=(KERNEL, rowscale.KERNEL), roles=("a", "b", "x"), passes=_passes, example=_example,
    call=lambda inputs, backend: (sid_generator_loss(*inputs, alpha=ALPHA, reduction="sum", backend=backend),),
    eager=lambda a, b, x: (sid_generator_loss_ref(a, b, x, ALPHA).sum(),),
    kernel_cases=_kernel_cases, gradcheck_cases=_gradcheck_cases)
