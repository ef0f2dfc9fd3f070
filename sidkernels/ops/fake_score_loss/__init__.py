"""The fake-score (EDM denoising) loss: per sample ``lambda(sigma) sum (D - y)^2`` (docs/ops.md, "Fake-score loss").

Kernel op ``fake_score_loss`` -> (loss[N], scale[N], r): one pass writes the per-sample loss, the factor
``scale = 2 lambda`` and the residual ``r = D - y``; the backward is ``rowscale(grad_out, scale, +-r)``.
"""
from __future__ import annotations

import torch

from sidkernels import _checks as check
from sidkernels._abi import SIGMA_DATA, acc_dtype
from sidkernels._backend import resolve_backend
from sidkernels.ops import rowscale
from sidkernels.ops._common import REDUCTIONS, any_fp64, reduce, wants_grad
from sidkernels.ops._layout import check_sample_major, empty_rows, nothing, sample_major
from sidkernels.ops._registry import Op, kernel_op
from sidkernels.ops._traffic import Shape, Traffic
from sidkernels.ops.fake_score_loss import triton as kernels
from sidkernels.ops.fake_score_loss.reference import edm_loss_weight, fake_score_loss_ref


def _outputs(denoised, target, sigma, sigma_data, want_grad):
    acc = acc_dtype(denoised.dtype, target.dtype)
    r = (torch.empty_like(denoised, dtype=torch.promote_types(denoised.dtype, target.dtype)) if want_grad
         else nothing(denoised))
    return empty_rows(denoised, acc), empty_rows(denoised, acc), r


def _setup(ctx, inputs, output):
    loss, scale, r = output
    ctx.save_for_backward(scale, r)
    ctx.dtypes = (inputs[0].dtype, inputs[1].dtype)
    ctx.mark_non_differentiable(scale, r)


def _backward(ctx, g_loss, *unused):
    scale, r = ctx.saved_tensors
    op = rowscale.KERNEL.variant(ctx.backend)
    need_d, need_y = ctx.needs_input_grad[:2]
    return (op(g_loss, scale, r, 1.0, ctx.dtypes[0]) if need_d else None,
            op(g_loss, scale, r, -1.0, ctx.dtypes[1]) if need_y else None)


def _plan(sms, denoised: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor, sigma_data: float, want_grad: bool):
    check_sample_major("fake_score_loss", denoised, target)
    loss, scale, r = _outputs(denoised, target, sigma, sigma_data, want_grad)
    return (loss, scale, r), kernels.launches(denoised, target, sigma, r, loss, scale, sigma_data, sms=sms)


KERNEL = kernel_op(
    "fake_score_loss",
    "(Tensor denoised, Tensor target, Tensor sigma, float sigma_data, bool want_grad) -> (Tensor, Tensor, Tensor)",
    outputs=_outputs, plan=_plan, setup_context=_setup, backward=_backward)


# ------------------------------------------------------------------ the public function
def fake_score_loss(denoised, target, sigma, *, sigma_data=SIGMA_DATA, reduction="mean", loss_scale=1.0,
                    backend="auto"):
    """EDM denoising loss of the fake-score net: per sample ``lambda(sigma) sum (D - y)^2``.

    ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``; samples with a NaN in D or y
    contribute zero loss and gradient; reductions as in :func:`sidkernels.sid_generator_loss` (the official
    loss is ``loss_scale=1`` with ``"mean"``).  The loss is fp32 (fp64 when an input is fp64).
    """
    check.float_tensor("denoised", denoised)
    check.float_tensor("target", target)
    n = check.batch("denoised", denoised)
    check.same_shape("target", target, "denoised", denoised)
    check.same_device("target", target, "denoised", denoised)
    sigma = check.per_sample_sigma(sigma, n, "denoised", denoised)
    check.choice("reduction", reduction, REDUCTIONS)
    backend = resolve_backend(backend, denoised.device, "fake_score_loss", fp64=any_fp64(denoised, target))
    if backend == "torch":
        per_sample = fake_score_loss_ref(denoised, target, sigma, sigma_data=sigma_data)
    else:
        want = wants_grad(denoised) or wants_grad(target)
        per_sample = KERNEL.variant(backend)(*sample_major(denoised, target), sigma, float(sigma_data), want)[0]
    return reduce(per_sample, reduction, loss_scale)


# ------------------------------------------------------------------ descriptor
def _passes(n, d, dt):
    """Only D takes a gradient (the target y is the generator's sample, drawn without grad in the trainer);
    r = D - y is stored in the promoted dtype of D and y."""
    s = Shape(n, d)
    acc = acc_dtype(dt["D"], dt["y"])
    r = s.big("r", torch.promote_types(dt["D"], dt["y"]))
    fwd = Traffic((s.big("D", dt["D"]), s.big("y", dt["y"]), s.rows("sigma")),
                  (s.rows("loss", acc), s.rows("scale", acc), r))
    bwd = Traffic((s.rows("g_loss", acc), s.rows("scale", acc), r), (s.big("g_D", dt["D"]),))
    return fwd, bwd


def _example(shape, dtype, device):
    return (torch.randn(shape, device=device, dtype=dtype).requires_grad_(True),
            torch.randn(shape, device=device, dtype=dtype), torch.exp(torch.randn(shape[0], device=device) * 1.2 - 1.2))


def _kernel_cases(shape, dtype, device):
    den = torch.randn(shape, device=device).to(dtype)
    y = torch.randn(shape, device=device).to(torch.bfloat16 if dtype != torch.float64 else dtype)
    sigma = torch.rand(shape[0], device=device) + 0.1
    return {"grad": (KERNEL, (den.clone().requires_grad_(True), y, sigma, 0.5, True)),
            "no_grad": (KERNEL, (den, y, sigma, 0.7, False))}


def _gradcheck_cases(device):
    sigma = torch.tensor([0.05, 0.7, 4.0], dtype=torch.float64, device=device)
    inputs = tuple(torch.randn(3, 2, 5, dtype=torch.float64, device=device, requires_grad=True) for _ in range(2))
    return {"none": (lambda d, y: fake_score_loss(d, y, sigma, reduction="none", backend="triton"), inputs)}


OP = Op(
    name="fake_score_loss", public=fake_score_loss, reference=fake_score_loss_ref,
    kernels=(KERNEL, rowscale.KERNEL), roles=("D", "y"), passes=_passes, example=_example,
    call=lambda inputs, backend: (fake_score_loss(*inputs, reduction="sum", backend=backend),),
    eager=lambda D, y, sigma: (fake_score_loss_ref(D, y, sigma).sum(),),
    kernel_cases=_kernel_cases, gradcheck_cases=_gradcheck_cases)

