"""Kernel ops of the per-sample distances: ``distance`` -> (dist[N], scale[N]) and its backward
``distance_bwd`` -> (grad_a, grad_b), which re-reads a and b (no saved residual).  Math:
:mod:`sidkernels.kernels.distance`; kinds as :data:`sidkernels.ref.distance.DISTANCE_CODE`."""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels.kernels import distance as kernels
from sidkernels.ops._layout import acc_dtype, check_sample_major, empty_rows, nothing
from sidkernels.ops._registry import OpSpec, define_triton, kernel_op


# ------------------------------------------------------------------ distance: d_n and scale_n
def _outputs(a, b, kind, c):
    acc = acc_dtype(a, b)
    return empty_rows(a, acc), empty_rows(a, acc)


def _setup(ctx, inputs, output):
    a, b, kind, _ = inputs
    ctx.save_for_backward(a, b, output[1])
    ctx.kind, ctx.dtypes = kind, (a.dtype, b.dtype)
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, g_dist, unused):
    a, b, scale = ctx.saved_tensors
    need_a, need_b = ctx.needs_input_grad[:2]
    g_a, g_b = kernel_op("distance_bwd", ctx.backend)(g_dist, scale, a, b, ctx.kind,
                                                      ctx.dtypes[0] if need_a else None,
                                                      ctx.dtypes[1] if need_b else None)
    return (g_a if need_a else None), (g_b if need_b else None), None, None


SPEC = OpSpec(fake=_outputs, setup_context=_setup, backward=_backward)


@define_triton("distance", SPEC)
def distance_triton(a: torch.Tensor, b: torch.Tensor, kind: int, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample distance ``d_n`` of kind 0 l2, 1 l1, 2 pseudo-Huber (constant ``c``) and the backward's
    per-sample factor ``scale_n``."""
    check_sample_major("distance", a, b)
    dist, scale = _outputs(a, b, kind, c)
    kernels.distance_fwd(a, b, dist, scale, kind, c)
    return dist, scale


# ------------------------------------------------------------------ distance_bwd: grad_out scale phi(a - b)
def _bwd_outputs(grad_out, scale, a, b, kind, a_dtype, b_dtype):
    g_a = torch.empty_like(a, dtype=a_dtype) if a_dtype is not None else nothing(a)
    g_b = torch.empty_like(a, dtype=b_dtype) if b_dtype is not None else nothing(a)
    return g_a, g_b


BWD_SPEC = OpSpec(fake=_bwd_outputs)


@define_triton("distance_bwd", BWD_SPEC)
def distance_bwd_triton(grad_out: torch.Tensor, scale: torch.Tensor, a: torch.Tensor, b: torch.Tensor, kind: int,
                        a_dtype: Optional[torch.dtype], b_dtype: Optional[torch.dtype]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_out[n] scale[n] phi(a - b), -...)`` in ``a_dtype`` / ``b_dtype``; a gradient whose dtype is
    None is not computed (empty).  ``grad_out`` may be strided (an expanded gradient has stride 0)."""
    check_sample_major("distance_bwd", a, b)
    g_a, g_b = _bwd_outputs(grad_out, scale, a, b, kind, a_dtype, b_dtype)
    kernels.distance_bwd(grad_out, scale, a, b, g_a, g_b, kind)
    return g_a, g_b
