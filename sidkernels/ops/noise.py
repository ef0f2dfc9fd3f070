"""Kernel op ``add_noise``: fused noise injection, outputs ``(x_t, net_input, eps)``.

``net_input`` is empty unless ``net_dtype`` is given, ``eps`` is empty unless ``want_eps``.
Backward: ``dx = dx_t + c_in(sigma) * dnet_input`` (op ``precond_in_bwd``; no eps needed).
"""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels.kernels import noise as kernels
from sidkernels.ops._layout import acc_dtype, check_sample_major, nothing, sample_major
from sidkernels.ops._registry import OpSpec, define_triton, kernel_op


def _outputs(x, sigma, seed, kind, sigma_data, net_dtype, want_eps):
    xt = torch.empty_like(x)
    net = torch.empty_like(x, dtype=net_dtype) if net_dtype is not None else nothing(x)
    eps = torch.empty_like(x, dtype=acc_dtype(x)) if want_eps else nothing(x, acc_dtype(x))
    return xt, net, eps


def _setup(ctx, inputs, output):
    x, sigma, _, kind, sigma_data, net_dtype, _ = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.x_dtype, ctx.has_net = kind, sigma_data, x.dtype, net_dtype is not None
    ctx.mark_non_differentiable(output[2])


def _backward(ctx, g_xt, g_net, g_eps):
    if not (ctx.has_net and g_net is not None):
        return g_xt, None, None, None, None, None, None
    (sigma,) = ctx.saved_tensors
    g_net, addend = sample_major(g_net, g_xt) if g_xt is not None else (sample_major(g_net)[0], nothing(g_net))
    g_x = kernel_op("precond_in_bwd", ctx.backend)(g_net, sigma, addend, ctx.kind, ctx.sigma_data, ctx.x_dtype)
    return g_x, None, None, None, None, None, None


SPEC = OpSpec(fake=_outputs, setup_context=_setup, backward=_backward)


@define_triton("add_noise", SPEC)
def add_noise_triton(x: torch.Tensor, sigma: torch.Tensor, seed: torch.Tensor, kind: int, sigma_data: float,
                     net_dtype: Optional[torch.dtype], want_eps: bool
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_sample_major("add_noise", x)
    xt, net, eps = _outputs(x, sigma, seed, kind, sigma_data, net_dtype, want_eps)
    kernels.add_noise_fwd(x, sigma, seed, xt, net, eps, kind, sigma_data)
    return xt, net, eps
