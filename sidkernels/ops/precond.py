"""Kernel ops of EDM preconditioning: ``precond_in`` / ``precond_in_bwd`` and ``precond_out`` /
``precond_out_bwd``.  sigma is a constant (no gradient)."""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels.kernels import precond as kernels
from sidkernels.ops._layout import acc_dtype, check_sample_major, empty_rows, nothing, sample_major
from sidkernels.ops._registry import OpSpec, define_triton, kernel_op


# ------------------------------------------------------------------ precond_in: (c_in x).to(dtype), c_noise
def _in_outputs(x, sigma, kind, sigma_data, dtype):
    return torch.empty_like(x, dtype=dtype), empty_rows(x, torch.float32)


def _in_setup(ctx, inputs, output):
    x, sigma, kind, sigma_data, _ = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.x_dtype = kind, sigma_data, x.dtype
    ctx.mark_non_differentiable(output[1])


def _in_backward(ctx, g_y, g_c_noise):
    (sigma,) = ctx.saved_tensors
    (g_y,) = sample_major(g_y)
    g_x = kernel_op("precond_in_bwd", ctx.backend)(g_y, sigma, nothing(g_y), ctx.kind, ctx.sigma_data, ctx.x_dtype)
    return g_x, None, None, None, None


IN_SPEC = OpSpec(fake=_in_outputs, setup_context=_in_setup, backward=_in_backward)


@define_triton("precond_in", IN_SPEC)
def precond_in_triton(x: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float, dtype: torch.dtype
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    check_sample_major("precond_in", x)
    y, c_noise = _in_outputs(x, sigma, kind, sigma_data, dtype)
    kernels.precond_in_fwd(x, sigma, y, c_noise, kind, sigma_data)
    return y, c_noise


# ------------------------------------------------------------------ precond_in_bwd: (c_in gy + addend).to(x_dtype)
def _in_bwd_outputs(grad_y, sigma, addend, kind, sigma_data, x_dtype):
    return torch.empty_like(grad_y, dtype=x_dtype)


IN_BWD_SPEC = OpSpec(fake=_in_bwd_outputs)


@define_triton("precond_in_bwd", IN_BWD_SPEC)
def precond_in_bwd_triton(grad_y: torch.Tensor, sigma: torch.Tensor, addend: torch.Tensor, kind: int,
                          sigma_data: float, x_dtype: torch.dtype) -> torch.Tensor:
    """``(c_in * grad_y + addend).to(x_dtype)``; ``addend`` may be empty (no addend)."""
    check_sample_major("precond_in_bwd", grad_y, *([addend] if addend.numel() else []))
    g_x = _in_bwd_outputs(grad_y, sigma, addend, kind, sigma_data, x_dtype)
    kernels.precond_in_bwd(grad_y, sigma, addend, g_x, kind, sigma_data)
    return g_x


# ------------------------------------------------------------------ precond_out: c_skip x + c_out F (fp32)
def _out_outputs(x, F, sigma, kind, sigma_data):
    return torch.empty_like(x, dtype=acc_dtype(x, F))


def _out_setup(ctx, inputs, output):
    x, F, sigma, kind, sigma_data = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.dtypes = kind, sigma_data, (x.dtype, F.dtype)


def _out_backward(ctx, g):
    (sigma,) = ctx.saved_tensors
    need_x, need_f = ctx.needs_input_grad[:2]
    (g,) = sample_major(g)
    g_x, g_f = kernel_op("precond_out_bwd", ctx.backend)(
        g, sigma, ctx.kind, ctx.sigma_data, ctx.dtypes[0] if need_x else None, ctx.dtypes[1] if need_f else None)
    return (g_x if need_x else None), (g_f if need_f else None), None, None, None


OUT_SPEC = OpSpec(fake=_out_outputs, setup_context=_out_setup, backward=_out_backward)


@define_triton("precond_out", OUT_SPEC)
def precond_out_triton(x: torch.Tensor, F: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float
                       ) -> torch.Tensor:
    check_sample_major("precond_out", x, F)
    out = _out_outputs(x, F, sigma, kind, sigma_data)
    kernels.precond_out_fwd(x, F, sigma, out, kind, sigma_data)
    return out


# ------------------------------------------------------------------ precond_out_bwd: c_skip g, c_out g
def _out_bwd_outputs(grad, sigma, kind, sigma_data, x_dtype, f_dtype):
    g_x = torch.empty_like(grad, dtype=x_dtype) if x_dtype is not None else nothing(grad)
    g_f = torch.empty_like(grad, dtype=f_dtype) if f_dtype is not None else nothing(grad)
    return g_x, g_f


OUT_BWD_SPEC = OpSpec(fake=_out_bwd_outputs)


@define_triton("precond_out_bwd", OUT_BWD_SPEC)
def precond_out_bwd_triton(grad: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float,
                           x_dtype: Optional[torch.dtype], f_dtype: Optional[torch.dtype]
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c_skip * grad, c_out * grad)``; a gradient whose dtype is None is not computed (empty)."""
    check_sample_major("precond_out_bwd", grad)
    g_x, g_f = _out_bwd_outputs(grad, sigma, kind, sigma_data, x_dtype, f_dtype)
    kernels.precond_out_bwd(grad, sigma, g_x, g_f, kind, sigma_data)
    return g_x, g_f
