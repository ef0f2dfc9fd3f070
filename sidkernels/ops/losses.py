"""Fused loss custom ops (fake + autograd) over the Triton kernels.

``sidkernels::sid_loss_triton(a, b, x) -> (loss[N], scale[N], ga, gb, gx)`` and
``sidkernels::fake_score_loss_triton(D, y, sigma) -> (loss[N], scale[N], r)``: the forward computes the
per-sample loss and the (bracketed) gradients in one pass; only ``loss`` is differentiable.  The backward
is ``sidkernels::rowscale_triton``: ``grad_out[n] * scale[n] * coef * src`` per saved gradient.
"""
from __future__ import annotations

import torch

from sidkernels.kernels import fake_score_loss as fake_kernels
from sidkernels.kernels import rowscale as rowscale_kernels
from sidkernels.kernels import sid_loss as sid_kernels
from sidkernels.kernels._common import torch_acc_dtype
from sidkernels.ops._layout import empty_rows, nothing, sample_major


def _rowscale_outputs(src, dtype):
    (src,) = sample_major(src)
    return src, torch.empty_like(src, dtype=dtype)


@torch.library.custom_op("sidkernels::rowscale_triton", mutates_args=())
def rowscale_triton(grad_out: torch.Tensor, scale: torch.Tensor, src: torch.Tensor, coef: float,
                    dtype: torch.dtype) -> torch.Tensor:
    """``(coef * grad_out[n] * scale[n] * src[n]).to(dtype)``, 0 for samples with ``scale[n] == 0``."""
    src, out = _rowscale_outputs(src, dtype)
    rowscale_kernels.rowscale(grad_out, scale, src, out, coef)
    return out


@rowscale_triton.register_fake
def _(grad_out, scale, src, coef, dtype):
    return _rowscale_outputs(src, dtype)[1]


# ----------------------------------------------------------------------------- SiD generator loss
def _sid_outputs(a, b, x, grad_a, grad_b, grad_x):
    a, b, x = sample_major(a, b, x)
    acc = torch_acc_dtype(a, b, x)
    grads = [torch.empty_like(t) if want else nothing(t) for t, want in ((a, grad_a), (b, grad_b), (x, grad_x))]
    return (a, b, x), (empty_rows(a, acc), empty_rows(a, acc), *grads)


@torch.library.custom_op("sidkernels::sid_loss_triton", mutates_args=())
def sid_loss_triton(teacher_out: torch.Tensor, fake_out: torch.Tensor, x_g: torch.Tensor, alpha: float,
                    weight_clip: float, normalize: bool, grad_a: bool, grad_b: bool, grad_x: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    (a, b, x), (loss, scale, ga, gb, gx) = _sid_outputs(teacher_out, fake_out, x_g, grad_a, grad_b, grad_x)
    sid_kernels.sid_loss_fwd(a, b, x, ga, gb, gx, loss, scale, alpha, weight_clip, normalize)
    return loss, scale, ga, gb, gx


@sid_loss_triton.register_fake
def _(teacher_out, fake_out, x_g, alpha, weight_clip, normalize, grad_a, grad_b, grad_x):
    return _sid_outputs(teacher_out, fake_out, x_g, grad_a, grad_b, grad_x)[1]


def _sid_setup(ctx, inputs, output):
    loss, scale, ga, gb, gx = output
    ctx.save_for_backward(scale, ga, gb, gx)
    ctx.dtypes = tuple(t.dtype for t in inputs[:3])
    ctx.mark_non_differentiable(scale, ga, gb, gx)


def _sid_backward(ctx, g_loss, *unused):
    scale, *saved = ctx.saved_tensors
    return (*(rowscale_triton(g_loss, scale, src, 1.0, dtype) if need else None
              for src, dtype, need in zip(saved, ctx.dtypes, ctx.needs_input_grad[:3])),
            None, None, None, None, None, None)


sid_loss_triton.register_autograd(_sid_backward, setup_context=_sid_setup)


# ----------------------------------------------------------------------------- fake-score loss
def _fake_outputs(den, y, want_r):
    den, y = sample_major(den, y)
    acc = torch_acc_dtype(den, y)
    r = torch.empty_like(den, dtype=torch.promote_types(den.dtype, y.dtype)) if want_r else nothing(den)
    return (den, y), (empty_rows(den, acc), empty_rows(den, acc), r)


@torch.library.custom_op("sidkernels::fake_score_loss_triton", mutates_args=())
def fake_score_loss_triton(denoised: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor, sigma_data: float,
                           want_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    (den, y), (loss, scale, r) = _fake_outputs(denoised, target, want_grad)
    fake_kernels.fake_loss_fwd(den, y, sigma, r, loss, scale, sigma_data)
    return loss, scale, r


@fake_score_loss_triton.register_fake
def _(denoised, target, sigma, sigma_data, want_grad):
    return _fake_outputs(denoised, target, want_grad)[1]


def _fake_setup(ctx, inputs, output):
    loss, scale, r = output
    ctx.save_for_backward(scale, r)
    ctx.dtypes = (inputs[0].dtype, inputs[1].dtype)
    ctx.mark_non_differentiable(scale, r)


def _fake_backward(ctx, g_loss, *unused):
    scale, r = ctx.saved_tensors
    need_d, need_y = ctx.needs_input_grad[:2]
    g_d = rowscale_triton(g_loss, scale, r, 1.0, ctx.dtypes[0]) if need_d else None
    g_y = rowscale_triton(g_loss, scale, r, -1.0, ctx.dtypes[1]) if need_y else None
    return g_d, g_y, None, None, None


fake_score_loss_triton.register_autograd(_fake_backward, setup_context=_fake_setup)
