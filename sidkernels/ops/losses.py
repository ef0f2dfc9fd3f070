"""Kernel ops of the fused losses: ``sid_loss`` -> (loss[N], scale[N], ga, gb, gx), ``fake_score_loss`` ->
(loss[N], scale[N], r), and their shared backward ``rowscale``.  The forward computes the per-sample loss
and the (bracketed) gradients in one pass; only ``loss`` is differentiable.  The backward is
``grad_out[n] * scale[n] * coef * saved`` per saved gradient."""
from __future__ import annotations

import torch

from sidkernels.kernels import fake_score_loss as fake_kernels
from sidkernels.kernels import rowscale as rowscale_kernels
from sidkernels.kernels import sid_loss as sid_kernels
from sidkernels.ops._layout import acc_dtype, check_sample_major, empty_rows, nothing
from sidkernels.ops._registry import OpSpec, define_triton, kernel_op


# ------------------------------------------------------------------ rowscale (the losses' backward)
def _rowscale_outputs(grad_out, scale, src, coef, dtype):
    return torch.empty_like(src, dtype=dtype)


ROWSCALE_SPEC = OpSpec(fake=_rowscale_outputs)


@define_triton("rowscale", ROWSCALE_SPEC)
def rowscale_triton(grad_out: torch.Tensor, scale: torch.Tensor, src: torch.Tensor, coef: float,
                    dtype: torch.dtype) -> torch.Tensor:
    """``(coef * grad_out[n] * scale[n] * src[n]).to(dtype)``, 0 for samples with ``scale[n] == 0``;
    ``grad_out`` may be strided (an expanded gradient has stride 0)."""
    check_sample_major("rowscale", src)
    out = _rowscale_outputs(grad_out, scale, src, coef, dtype)
    rowscale_kernels.rowscale(grad_out, scale, src, out, coef)
    return out


def _saved_for_backward(ctx, inputs, output, n_inputs):
    loss, scale, *saved = output
    ctx.save_for_backward(scale, *saved)
    ctx.dtypes = tuple(t.dtype for t in inputs[:n_inputs])
    ctx.mark_non_differentiable(scale, *saved)


# ------------------------------------------------------------------ SiD generator loss
def _sid_outputs(teacher_out, fake_out, x_g, alpha, weight_clip, normalize, grad_a, grad_b, grad_x):
    acc = acc_dtype(teacher_out, fake_out, x_g)
    grads = [torch.empty_like(t) if want else nothing(t)
             for t, want in ((teacher_out, grad_a), (fake_out, grad_b), (x_g, grad_x))]
    return (empty_rows(x_g, acc), empty_rows(x_g, acc), *grads)


def _sid_backward(ctx, g_loss, *unused):
    scale, *saved = ctx.saved_tensors
    rowscale = kernel_op("rowscale", ctx.backend)
    grads = (rowscale(g_loss, scale, src, 1.0, dtype) if need else None
             for src, dtype, need in zip(saved, ctx.dtypes, ctx.needs_input_grad[:3]))
    return (*grads, None, None, None, None, None, None)


SID_SPEC = OpSpec(fake=_sid_outputs, setup_context=lambda ctx, i, o: _saved_for_backward(ctx, i, o, 3),
                  backward=_sid_backward)


@define_triton("sid_loss", SID_SPEC)
def sid_loss_triton(teacher_out: torch.Tensor, fake_out: torch.Tensor, x_g: torch.Tensor, alpha: float,
                    weight_clip: float, normalize: bool, grad_a: bool, grad_b: bool, grad_x: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    check_sample_major("sid_loss", teacher_out, fake_out, x_g)
    loss, scale, ga, gb, gx = _sid_outputs(teacher_out, fake_out, x_g, alpha, weight_clip, normalize,
                                           grad_a, grad_b, grad_x)
    sid_kernels.sid_loss_fwd(teacher_out, fake_out, x_g, ga, gb, gx, loss, scale, alpha, weight_clip, normalize)
    return loss, scale, ga, gb, gx


# ------------------------------------------------------------------ fake-score loss
def _fake_outputs(denoised, target, sigma, sigma_data, want_grad):
    acc = acc_dtype(denoised, target)
    r = (torch.empty_like(denoised, dtype=torch.promote_types(denoised.dtype, target.dtype)) if want_grad
         else nothing(denoised))
    return empty_rows(denoised, acc), empty_rows(denoised, acc), r


def _fake_backward(ctx, g_loss, *unused):
    scale, r = ctx.saved_tensors
    rowscale = kernel_op("rowscale", ctx.backend)
    need_d, need_y = ctx.needs_input_grad[:2]
    g_d = rowscale(g_loss, scale, r, 1.0, ctx.dtypes[0]) if need_d else None
    g_y = rowscale(g_loss, scale, r, -1.0, ctx.dtypes[1]) if need_y else None
    return g_d, g_y, None, None, None


FAKE_SPEC = OpSpec(fake=_fake_outputs, setup_context=lambda ctx, i, o: _saved_for_backward(ctx, i, o, 2),
                   backward=_fake_backward)


@define_triton("fake_score_loss", FAKE_SPEC)
def fake_score_loss_triton(denoised: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor, sigma_data: float,
                           want_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_sample_major("fake_score_loss", denoised, target)
    loss, scale, r = _fake_outputs(denoised, target, sigma, sigma_data, want_grad)
    fake_kernels.fake_loss_fwd(denoised, target, sigma, r, loss, scale, sigma_data)
    return loss, scale, r
