"""``sidkernels::add_noise_triton``: fused noise injection as a custom op (fake + autograd).

Outputs ``(x_t, net_input, eps)``; ``net_input`` is empty unless ``net_dtype`` is given and ``eps`` is
empty unless ``want_eps``.  Backward: ``dx = dx_t + c_in(sigma) * dnet_input`` (no eps needed).
"""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels.kernels import noise as kernels
from sidkernels.kernels._common import torch_acc_dtype
from sidkernels.ops._layout import nothing, sample_major
from sidkernels.ops.precond import precond_in_bwd_triton


def _outputs(x, net_dtype, want_eps):
    (x,) = sample_major(x)
    xt = torch.empty_like(x)
    net = torch.empty_like(x, dtype=net_dtype) if net_dtype is not None else nothing(x)
    eps = torch.empty_like(x, dtype=torch_acc_dtype(x)) if want_eps else nothing(x, torch_acc_dtype(x))
    return x, xt, net, eps


@torch.library.custom_op("sidkernels::add_noise_triton", mutates_args=())
def add_noise_triton(x: torch.Tensor, sigma: torch.Tensor, seed: torch.Tensor, kind: int, sigma_data: float,
                     net_dtype: Optional[torch.dtype], want_eps: bool
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, xt, net, eps = _outputs(x, net_dtype, want_eps)
    kernels.add_noise_fwd(x, sigma, seed, xt, net, eps, kind, sigma_data)
    return xt, net, eps


@add_noise_triton.register_fake
def _(x, sigma, seed, kind, sigma_data, net_dtype, want_eps):
    _, xt, net, eps = _outputs(x, net_dtype, want_eps)
    return xt, net, eps


def _setup(ctx, inputs, output):
    x, sigma, _, kind, sigma_data, net_dtype, _ = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.x_dtype, ctx.has_net = kind, sigma_data, x.dtype, net_dtype is not None


def _backward(ctx, g_xt, g_net, g_eps):
    if ctx.has_net and g_net is not None:
        (sigma,) = ctx.saved_tensors
        addend = g_xt if g_xt is not None else nothing(g_net)
        g_x = precond_in_bwd_triton(g_net, sigma, addend, ctx.kind, ctx.sigma_data, ctx.x_dtype)
    else:
        g_x = g_xt
    return g_x, None, None, None, None, None, None


add_noise_triton.register_autograd(_backward, setup_context=_setup)
