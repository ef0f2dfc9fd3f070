"""Kernel op ``rowscale``, the backward of the fused losses: ``(coef * grad_out[n] * scale[n] * src[n]).to(dtype)``,
0 for samples with ``scale[n] == 0``.  The losses' forwards write the per-element gradient (``src``) and the
per-sample factor (``scale``) in their single pass, so their backward is this one elementwise pass."""
from __future__ import annotations

import torch

from sidkernels.ops._layout import check_sample_major
from sidkernels.ops._registry import kernel_op
from sidkernels.ops.rowscale import triton as kernels


def _outputs(grad_out, scale, src, coef, dtype):
    return torch.empty_like(src, dtype=dtype)


def _plan(sms, grad_out: torch.Tensor, scale: torch.Tensor, src: torch.Tensor, coef: float,
            dtype: torch.dtype):
    """``grad_out`` may be strided (an expanded gradient has stride 0)."""
    check_sample_major("rowscale", src)
    out = _outputs(grad_out, scale, src, coef, dtype)
    return out, kernels.launches(grad_out, scale, src, out, coef, sms=sms)


KERNEL = kernel_op("rowscale", "(Tensor grad_out, Tensor scale, Tensor src, float coef, ScalarType dtype) -> Tensor",
                   outputs=_outputs, plan=_plan)


def rowscale_cases(shape, dtype, device) -> dict:
    """The kernel cases of ``rowscale``: per-sample factors with stride 1 and stride 0 (an expanded gradient)."""
    n = shape[0]
    rows = torch.rand(n, device=device)
    src = torch.randn(shape, device=device).to(dtype)
    return {"rowscale": (KERNEL, (rows, rows, src, -1.0, dtype)),
            "rowscale_stride0": (KERNEL, (torch.ones((), device=device).expand(n), rows, src, 1.0, torch.float32))}
