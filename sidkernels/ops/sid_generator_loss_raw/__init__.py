"""The SiD generator loss fused from the networks' raw outputs (docs/ops.md, "SiD generator loss from raw
outputs").

Since ``a - b = c_out (F_phi - F_psi)`` and both denoisers share ``c_skip x_t``, one op takes the teacher's and
the fake score's raw outputs F_phi, F_psi (bf16 under autocast), x_t, x_g and sigma, and returns the per-sample
SiD loss of ``a = c_skip x_t + c_out F_phi``, ``b = c_skip x_t + c_out F_psi``; its backward gives the
gradients of F_phi, F_psi, x_t and x_g directly.  Neither a, b nor any fp32 D is materialised.

Kernel ops: ``sid_generator_loss_raw`` -> (loss[N], scale[N]) and ``sid_generator_loss_raw_bwd`` -> the four
gradients (each in its input's dtype, or not computed), re-reading the four inputs.
"""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels import _checks as check
from sidkernels._abi import PRECOND_CODE, PRECONDS, SIGMA_DATA, acc_dtype
from sidkernels._backend import resolve_backend
from sidkernels.ops._common import REDUCTIONS, any_fp64, reduce
from sidkernels.ops._layout import check_sample_major, empty_rows, nothing, sample_major
from sidkernels.ops._registry import Op, kernel_op
from sidkernels.ops._traffic import Shape, Traffic
from sidkernels.ops.sid_generator_loss_raw import triton as kernels
from sidkernels.ops.sid_generator_loss_raw.reference import sid_generator_loss_raw_ref

INPUTS = ("teacher_raw", "fake_raw", "x_t", "x_g")


# ------------------------------------------------------------------ sid_generator_loss_raw_bwd
def _bwd_outputs(grad_out, scale, teacher_raw, fake_raw, x_t, x_g, sigma, kind, sigma_data, alpha, teacher_dtype,
                 fake_dtype, x_t_dtype, x_g_dtype):
    like = x_g
    return tuple(torch.empty_like(like, dtype=dtype) if dtype is not None else nothing(like)
                 for dtype in (teacher_dtype, fake_dtype, x_t_dtype, x_g_dtype))


def _bwd_plan(sms, grad_out: torch.Tensor, scale: torch.Tensor, teacher_raw: torch.Tensor, fake_raw: torch.Tensor,
                x_t: torch.Tensor, x_g: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float, alpha: float,
                teacher_dtype: Optional[torch.dtype], fake_dtype: Optional[torch.dtype],
                x_t_dtype: Optional[torch.dtype], x_g_dtype: Optional[torch.dtype]):
    """The four gradients ``grad_out[n] scale[n] (...)`` (module docstring of the Triton kernels); a gradient
    whose dtype is None is not computed (empty).  ``grad_out`` may be strided."""
    check_sample_major("sid_generator_loss_raw_bwd", x_g, teacher_raw, fake_raw, x_t)
    grads = _bwd_outputs(grad_out, scale, teacher_raw, fake_raw, x_t, x_g, sigma, kind, sigma_data, alpha,
                         teacher_dtype, fake_dtype, x_t_dtype, x_g_dtype)
    return grads, kernels.backward_launches(grad_out, scale, teacher_raw, fake_raw, x_t, x_g, sigma, *grads, kind, sigma_data,
                                  alpha, sms=sms)


BACKWARD = kernel_op(
    "sid_generator_loss_raw_bwd",
    "(Tensor grad_out, Tensor scale, Tensor teacher_raw, Tensor fake_raw, Tensor x_t, Tensor x_g, Tensor sigma, "
    "int kind, float sigma_data, float alpha, ScalarType? teacher_dtype, ScalarType? fake_dtype, "
    "ScalarType? x_t_dtype, ScalarType? x_g_dtype) -> (Tensor, Tensor, Tensor, Tensor)",
    outputs=_bwd_outputs, plan=_bwd_plan)


# ------------------------------------------------------------------ sid_generator_loss_raw: loss[N], scale[N]
def _outputs(teacher_raw, fake_raw, x_t, x_g, sigma, kind, sigma_data, alpha, weight_clip, normalize):
    acc = acc_dtype(teacher_raw.dtype, fake_raw.dtype, x_t.dtype, x_g.dtype)
    return empty_rows(x_g, acc), empty_rows(x_g, acc)


def _setup(ctx, inputs, output):
    teacher_raw, fake_raw, x_t, x_g, sigma, kind, sigma_data, alpha, _, _ = inputs
    ctx.save_for_backward(output[1], teacher_raw, fake_raw, x_t, x_g, sigma)
    ctx.kind, ctx.sigma_data, ctx.alpha = kind, sigma_data, alpha
    ctx.dtypes = (teacher_raw.dtype, fake_raw.dtype, x_t.dtype, x_g.dtype)
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, g_loss, unused):
    scale, *tensors, sigma = ctx.saved_tensors
    need = ctx.needs_input_grad[:4]
    grads = BACKWARD.variant(ctx.backend)(g_loss, scale, *tensors, sigma, ctx.kind, ctx.sigma_data, ctx.alpha,
                                          *(dtype if n else None for dtype, n in zip(ctx.dtypes, need)))
    return tuple(g if n else None for g, n in zip(grads, need))


def _plan(sms, teacher_raw: torch.Tensor, fake_raw: torch.Tensor, x_t: torch.Tensor, x_g: torch.Tensor,
            sigma: torch.Tensor, kind: int, sigma_data: float, alpha: float, weight_clip: float, normalize: bool):
    check_sample_major("sid_generator_loss_raw", x_g, teacher_raw, fake_raw, x_t)
    loss, scale = _outputs(teacher_raw, fake_raw, x_t, x_g, sigma, kind, sigma_data, alpha, weight_clip, normalize)
    return (loss, scale), kernels.forward_launches(teacher_raw, fake_raw, x_t, x_g, sigma, loss, scale, kind, sigma_data, alpha,
                                 weight_clip, normalize, sms=sms)


KERNEL = kernel_op(
    "sid_generator_loss_raw",
    "(Tensor teacher_raw, Tensor fake_raw, Tensor x_t, Tensor x_g, Tensor sigma, int kind, float sigma_data, "
    "float alpha, float weight_clip, bool normalize) -> (Tensor, Tensor)",
    outputs=_outputs, plan=_plan, setup_context=_setup, backward=_backward)


# ------------------------------------------------------------------ the public function
def sid_generator_loss_raw(teacher_raw, fake_raw, x_t, x_g, sigma, *, alpha=1.2, precond="edm",
                           sigma_data=SIGMA_DATA, reduction="mean", loss_scale=1.0, weight_clip=1e-5, normalize=True,
                           backend="auto"):
    """SiD generator loss from the raw outputs ``F_phi = teacher_raw``, ``F_psi = fake_raw`` of two networks
    preconditioned the same way (``precond``, ``sigma_data``) and evaluated at the same ``x_t`` and ``sigma``.

    Equals ``sid_generator_loss(c_skip x_t + c_out F_phi, c_skip x_t + c_out F_psi, x_g, ...)`` with the same
    ``alpha``, ``weight_clip``, ``normalize``, ``reduction`` and ``loss_scale`` (and the same NaN drop, now of
    a NaN in any of the four inputs), without forming either denoiser.  Gradients flow to all four tensors
    (``x_t``'s is ``c_skip (a - b) / w``); sigma is a constant.  The loss is fp32 (fp64 when an input is fp64).
    """
    tensors = (teacher_raw, fake_raw, x_t, x_g)
    for name, t in zip(INPUTS, tensors):
        check.float_tensor(name, t)
    n = check.batch("x_g", x_g)
    for name, t in zip(INPUTS[:3], tensors[:3]):
        check.same_shape(name, t, "x_g", x_g)
        check.same_device(name, t, "x_g", x_g)
    sigma = check.per_sample_sigma(sigma, n, "x_g", x_g)
    check.choice("precond", precond, PRECONDS)
    check.choice("reduction", reduction, REDUCTIONS)
    if not weight_clip > 0:
        raise ValueError(f"weight_clip must be > 0, got {weight_clip}")
    backend = resolve_backend(backend, x_g.device, "sid_generator_loss_raw", fp64=any_fp64(*tensors))
    if backend == "torch":
        per_sample = sid_generator_loss_raw_ref(teacher_raw, fake_raw, x_t, x_g, sigma, alpha, precond=precond,
                                                sigma_data=sigma_data, weight_clip=weight_clip, normalize=normalize)
    else:
        x_g, teacher_raw, fake_raw, x_t = sample_major(x_g, teacher_raw, fake_raw, x_t)
        per_sample = KERNEL.variant(backend)(teacher_raw, fake_raw, x_t, x_g, sigma, PRECOND_CODE[precond],
                                             float(sigma_data), float(alpha), float(weight_clip), bool(normalize))[0]
    return reduce(per_sample, reduction, loss_scale)


# ------------------------------------------------------------------ descriptor
ALPHA = 1.2


def _passes(n, d, dt):
    """Both passes read the four inputs once; the forward writes per-sample values only, the backward each
    gradient once.  This is the minimum traffic of the math (bench/byte_model.py's generator_loss_path)."""
    s = Shape(n, d)
    acc = acc_dtype(*(dt[k] for k in ("F_phi", "F_psi", "x_t", "x_g")))
    inputs = tuple(s.big(k, dt[k]) for k in ("F_phi", "F_psi", "x_t", "x_g"))
    fwd = Traffic(inputs + (s.rows("sigma"),), (s.rows("loss", acc), s.rows("scale", acc)))
    bwd = Traffic((s.rows("g_loss", acc), s.rows("scale", acc), s.rows("sigma")) + inputs,
                  tuple(s.big(f"g_{k}", dt[k]) for k in ("F_phi", "F_psi", "x_t", "x_g")))
    return fwd, bwd


def _example(shape, dtype, device):
    return (*(torch.randn(shape, device=device, dtype=dtype).requires_grad_(True) for _ in range(4)),
            torch.exp(torch.randn(shape[0], device=device) * 1.2 - 1.2))


def _kernel_cases(shape, dtype, device):
    n = shape[0]
    raw_dtype = torch.bfloat16 if dtype != torch.float64 else dtype
    fp, fq = (torch.randn(shape, device=device).to(raw_dtype) for _ in range(2))
    xt, xg = (torch.randn(shape, device=device).to(dtype) for _ in range(2))
    sigma = torch.rand(n, device=device) + 0.1
    rows = torch.rand(n, device=device)
    grads = (raw_dtype, raw_dtype, dtype, dtype)
    cases = {f"k{kind}": (KERNEL, (fp.clone().requires_grad_(True), fq.clone().requires_grad_(True),
                                   xt.clone().requires_grad_(True), xg.clone().requires_grad_(True), sigma, kind, 0.5,
                                   1.2, 1e-5, True)) for kind in (0, 1, 2)}
    cases["unnormalised"] = (KERNEL, (fp, fq, xt, xg, sigma, 0, 0.5, 1.0, 1e-5, False))
    cases["bwd"] = (BACKWARD, (rows, rows, fp, fq, xt, xg, sigma, 0, 0.5, 1.2, *grads))
    cases["bwd_stride0_xg"] = (BACKWARD, (torch.ones((), device=device).expand(n), rows, fp, fq, xt, xg, sigma, 1,
                                          0.5, 1.0, None, None, None, dtype))
    return cases


def _gradcheck_cases(device):
    """Unnormalised (w = 1, see sid_generator_loss's gradcheck) for every preconditioning kind."""
    sigma = torch.tensor([0.3, 2.0, 7.0], dtype=torch.float64, device=device)
    inputs = tuple(torch.randn(3, 2, 5, dtype=torch.float64, device=device, requires_grad=True) for _ in range(4))
    return {kind: (lambda fp, fq, xt, xg, kind=kind: sid_generator_loss_raw(
        fp, fq, xt, xg, sigma, alpha=1.2, precond=kind, normalize=False, reduction="none", backend="triton"), inputs)
        for kind in PRECONDS}


OP = Op(
    name="sid_generator_loss_raw", public=sid_generator_loss_raw, reference=sid_generator_loss_raw_ref,
    kernels=(KERNEL, BACKWARD), roles=("F_phi", "F_psi", "x_t", "x_g"), passes=_passes, example=_example,
    call=lambda inputs, backend: (sid_generator_loss_raw(*inputs, alpha=ALPHA, reduction="sum", backend=backend),),
    eager=lambda fp, fq, xt, xg, sigma: (sid_generator_loss_raw_ref(fp, fq, xt, xg, sigma, ALPHA).sum(),),
    kernel_cases=_kernel_cases, gradcheck_cases=_gradcheck_cases)
