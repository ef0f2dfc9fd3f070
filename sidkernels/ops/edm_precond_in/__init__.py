"""EDM input scaling, ``(c_in(sigma) x).to(dtype)`` and ``c_noise(sigma)`` (docs/ops.md, "Preconditioning").

Kernel ops: ``edm_precond_in`` -> (y, c_noise[N]) and its backward ``edm_precond_in_bwd``:
``gx = (c_in gy + addend).to(x_dtype)``, which the noise op's backward reuses with its d x_t term as the
addend.  sigma is a constant (no gradient).
"""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels import _checks as check
from sidkernels._abi import PRECOND_CODE, PRECONDS, SIGMA_DATA
from sidkernels._backend import resolve_backend
from sidkernels.ops._common import any_fp64
from sidkernels.ops._layout import check_sample_major, empty_rows, nothing, sample_major
from sidkernels.ops._registry import Op, kernel_op
from sidkernels.ops._traffic import Shape, Traffic
from sidkernels.ops.edm_precond_in import triton as kernels
from sidkernels.ops.edm_precond_in.reference import edm_precond_in_ref


# ------------------------------------------------------------------ edm_precond_in_bwd: (c_in gy + addend).to(x_dtype)
def _bwd_outputs(grad_y, sigma, addend, kind, sigma_data, x_dtype):
    return torch.empty_like(grad_y, dtype=x_dtype)


def _bwd_plan(sms, grad_y: torch.Tensor, sigma: torch.Tensor, addend: torch.Tensor, kind: int, sigma_data: float,
                x_dtype: torch.dtype):
    check_sample_major("edm_precond_in_bwd", grad_y, *([addend] if addend.numel() else []))
    g_x = _bwd_outputs(grad_y, sigma, addend, kind, sigma_data, x_dtype)
    return g_x, kernels.backward_launches(grad_y, sigma, addend, g_x, kind, sigma_data, sms=sms)


BACKWARD = kernel_op(
    "edm_precond_in_bwd",
    "(Tensor grad_y, Tensor sigma, Tensor addend, int kind, float sigma_data, ScalarType x_dtype) -> Tensor",
    outputs=_bwd_outputs, plan=_bwd_plan)


# ------------------------------------------------------------------ edm_precond_in: (c_in x).to(dtype), c_noise
def _outputs(x, sigma, kind, sigma_data, dtype):
    return torch.empty_like(x, dtype=dtype), empty_rows(x, torch.float32)


def _setup(ctx, inputs, output):
    x, sigma, kind, sigma_data, _ = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.x_dtype = kind, sigma_data, x.dtype
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, g_y, g_c_noise):
    (sigma,) = ctx.saved_tensors
    (g_y,) = sample_major(g_y)
    return BACKWARD.variant(ctx.backend)(g_y, sigma, nothing(g_y), ctx.kind, ctx.sigma_data, ctx.x_dtype)


def _plan(sms, x: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float, dtype: torch.dtype):
    check_sample_major("edm_precond_in", x)
    y, c_noise = _outputs(x, sigma, kind, sigma_data, dtype)
    return (y, c_noise), kernels.forward_launches(x, sigma, y, c_noise, kind, sigma_data, sms=sms)


KERNEL = kernel_op("edm_precond_in",
                   "(Tensor x, Tensor sigma, int kind, float sigma_data, ScalarType dtype) -> (Tensor, Tensor)",
                   outputs=_outputs, plan=_plan, setup_context=_setup, backward=_backward)


# ------------------------------------------------------------------ the public function
def edm_precond_in(x, sigma, *, sigma_data=SIGMA_DATA, dtype: Optional[torch.dtype] = None, precond="edm",
                   backend="auto"):
    """EDM input scaling: ``(c_in(sigma) * x).to(dtype)`` and ``c_noise(sigma)`` (fp32, shape [N]).

    ``precond`` selects the coefficient set (``"edm"``, ``"vp"``, ``"ve"``; docs/ops.md); ``dtype`` defaults
    to x's dtype.  sigma is treated as a constant.
    """
    check.float_tensor("x", x)
    n = check.batch("x", x)
    sigma = check.per_sample_sigma(sigma, n, "x", x)
    check.choice("precond", precond, PRECONDS)
    if dtype is not None and dtype not in check.FLOAT_DTYPES:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    dtype = dtype or x.dtype
    backend = resolve_backend(backend, x.device, "edm_precond_in", fp64=any_fp64(x) or dtype == torch.float64)
    if backend == "torch":
        return edm_precond_in_ref(x, sigma, precond, sigma_data, dtype)
    return KERNEL.variant(backend)(*sample_major(x), sigma, PRECOND_CODE[precond], float(sigma_data), dtype)


# ------------------------------------------------------------------ descriptor
def _passes(n, d, dt):
    s = Shape(n, d)
    fwd = Traffic((s.big("x", dt["x"]), s.rows("sigma")), (s.big("y", dt["out"]), s.rows("c_noise")))
    bwd = Traffic((s.big("g_y", dt["out"]), s.rows("sigma")), (s.big("g_x", dt["x"]),))
    return fwd, bwd


def _example(shape, dtype, device):
    return (torch.randn(shape, device=device, dtype=dtype).requires_grad_(True),
            torch.exp(torch.randn(shape[0], device=device) * 1.2 - 1.2))


def _kernel_cases(shape, dtype, device):
    x = torch.randn(shape, device=device).to(dtype)
    sigma = torch.rand(shape[0], device=device) + 0.1
    other = torch.bfloat16 if dtype != torch.float64 else torch.float64
    cases = {f"k{kind}": (KERNEL, (x.clone().requires_grad_(True), sigma, kind, 0.5, other)) for kind in (0, 1, 2)}
    cases["bwd"] = (BACKWARD, (x.to(other), sigma, x.clone(), 0, 0.5, dtype))
    cases["bwd_no_addend"] = (BACKWARD, (x.clone(), sigma, nothing(x), 1, 0.7, other))
    return cases


def _gradcheck_cases(device):
    sigma = torch.tensor([0.3, 2.0], dtype=torch.float64, device=device)
    x = torch.randn(2, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    return {kind: (lambda x, kind=kind: edm_precond_in(x, sigma, precond=kind, backend="triton")[0], (x,))
            for kind in PRECONDS}


OP = Op(
    name="edm_precond_in", public=edm_precond_in, reference=edm_precond_in_ref, kernels=(KERNEL, BACKWARD),
    roles=("x", "out"), passes=_passes, example=_example,
    call=lambda inputs, backend: edm_precond_in(*inputs, backend=backend),
    eager=lambda x, sigma: edm_precond_in_ref(x, sigma, "edm", SIGMA_DATA, x.dtype),
    kernel_cases=_kernel_cases, gradcheck_cases=_gradcheck_cases)
