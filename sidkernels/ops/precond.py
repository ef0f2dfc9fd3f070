"""EDM preconditioning custom ops (fake + autograd) over the Triton kernels.

``sidkernels::precond_in_triton(x, sigma) -> (c_in x, c_noise)`` with backward
``sidkernels::precond_in_bwd_triton``; ``sidkernels::precond_out_triton(x, F, sigma) -> D`` (fp32) with
backward ``sidkernels::precond_out_bwd_triton``.  sigma is a constant (no gradient).
"""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels.kernels import precond as kernels
from sidkernels.kernels._common import torch_acc_dtype
from sidkernels.ops._layout import empty_rows, nothing, sample_major


def _in_outputs(x, dtype):
    (x,) = sample_major(x)
    return x, torch.empty_like(x, dtype=dtype), empty_rows(x, torch.float32)


@torch.library.custom_op("sidkernels::precond_in_triton", mutates_args=())
def precond_in_triton(x: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float, dtype: torch.dtype
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, c_noise = _in_outputs(x, dtype)
    kernels.precond_in_fwd(x, sigma, y, c_noise, kind, sigma_data)
    return y, c_noise


@precond_in_triton.register_fake
def _(x, sigma, kind, sigma_data, dtype):
    return _in_outputs(x, dtype)[1:]


def _in_bwd_outputs(gy, addend, x_dtype):
    gy, addend = sample_major(gy, addend) if addend.numel() else (sample_major(gy)[0], addend)
    return gy, addend, torch.empty_like(gy, dtype=x_dtype)


@torch.library.custom_op("sidkernels::precond_in_bwd_triton", mutates_args=())
def precond_in_bwd_triton(grad_y: torch.Tensor, sigma: torch.Tensor, addend: torch.Tensor, kind: int,
                          sigma_data: float, x_dtype: torch.dtype) -> torch.Tensor:
    """``(c_in * grad_y + addend).to(x_dtype)``; ``addend`` may be empty (no addend)."""
    gy, addend, gx = _in_bwd_outputs(grad_y, addend, x_dtype)
    kernels.precond_in_bwd(gy, sigma, addend, gx, kind, sigma_data)
    return gx


@precond_in_bwd_triton.register_fake
def _(grad_y, sigma, addend, kind, sigma_data, x_dtype):
    return _in_bwd_outputs(grad_y, addend, x_dtype)[2]


def _in_setup(ctx, inputs, output):
    x, sigma, kind, sigma_data, _ = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.x_dtype = kind, sigma_data, x.dtype
    ctx.mark_non_differentiable(output[1])


def _in_backward(ctx, g_y, g_c_noise):
    (sigma,) = ctx.saved_tensors
    g_x = precond_in_bwd_triton(g_y, sigma, nothing(g_y), ctx.kind, ctx.sigma_data, ctx.x_dtype)
    return g_x, None, None, None, None


precond_in_triton.register_autograd(_in_backward, setup_context=_in_setup)


def _out_outputs(x, f):
    x, f = sample_major(x, f)
    return x, f, torch.empty_like(x, dtype=torch_acc_dtype(x, f))


@torch.library.custom_op("sidkernels::precond_out_triton", mutates_args=())
def precond_out_triton(x: torch.Tensor, F: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float
                       ) -> torch.Tensor:
    x, f, out = _out_outputs(x, F)
    kernels.precond_out_fwd(x, f, sigma, out, kind, sigma_data)
    return out


@precond_out_triton.register_fake
def _(x, F, sigma, kind, sigma_data):
    return _out_outputs(x, F)[2]


def _out_bwd_outputs(g, x_dtype, f_dtype):
    (g,) = sample_major(g)
    gx = torch.empty_like(g, dtype=x_dtype) if x_dtype is not None else nothing(g)
    gf = torch.empty_like(g, dtype=f_dtype) if f_dtype is not None else nothing(g)
    return g, gx, gf


@torch.library.custom_op("sidkernels::precond_out_bwd_triton", mutates_args=())
def precond_out_bwd_triton(grad: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float,
                           x_dtype: Optional[torch.dtype], f_dtype: Optional[torch.dtype]
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c_skip * grad, c_out * grad)``; a gradient whose dtype is None is not computed (empty)."""
    g, gx, gf = _out_bwd_outputs(grad, x_dtype, f_dtype)
    kernels.precond_out_bwd(g, sigma, gx, gf, kind, sigma_data)
    return gx, gf


@precond_out_bwd_triton.register_fake
def _(grad, sigma, kind, sigma_data, x_dtype, f_dtype):
    return _out_bwd_outputs(grad, x_dtype, f_dtype)[1:]


def _out_setup(ctx, inputs, output):
    x, F, sigma, kind, sigma_data = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.dtypes = kind, sigma_data, (x.dtype, F.dtype)


def _out_backward(ctx, g):
    (sigma,) = ctx.saved_tensors
    need_x, need_f = ctx.needs_input_grad[:2]
    gx, gf = precond_out_bwd_triton(g, sigma, ctx.kind, ctx.sigma_data,
                                    ctx.dtypes[0] if need_x else None, ctx.dtypes[1] if need_f else None)
    return (gx if need_x else None), (gf if need_f else None), None, None, None


precond_out_triton.register_autograd(_out_backward, setup_context=_out_setup)
