"""The EDM output combination ``D = c_skip(sigma) x + c_out(sigma) F`` in fp32 (docs/ops.md, "Preconditioning").

Kernel ops: ``edm_precond_out`` -> D and its backward ``edm_precond_out_bwd`` -> (c_skip g, c_out g), each
gradient in its input's dtype (or not computed).  sigma is a constant (no gradient).
"""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels import _checks as check
from sidkernels._abi import PRECOND_CODE, PRECONDS, SIGMA_DATA, acc_dtype
from sidkernels._backend import resolve_backend
from sidkernels.ops._common import any_fp64
from sidkernels.ops._layout import check_sample_major, nothing, sample_major
from sidkernels.ops._registry import Op, kernel_op
from sidkernels.ops._traffic import Shape, Traffic
from sidkernels.ops.edm_precond_out import triton as kernels
from sidkernels.ops.edm_precond_out.reference import edm_precond_out_ref


# ------------------------------------------------------------------ edm_precond_out_bwd: c_skip g, c_out g
def _bwd_outputs(grad, sigma, kind, sigma_data, x_dtype, f_dtype):
    g_x = torch.empty_like(grad, dtype=x_dtype) if x_dtype is not None else nothing(grad)
    g_f = torch.empty_like(grad, dtype=f_dtype) if f_dtype is not None else nothing(grad)
    return g_x, g_f


def _bwd_plan(sms, grad: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float,
                x_dtype: Optional[torch.dtype], f_dtype: Optional[torch.dtype]):
    """``(c_skip * grad, c_out * grad)``; a gradient whose dtype is None is not computed (empty)."""
    check_sample_major("edm_precond_out_bwd", grad)
    g_x, g_f = _bwd_outputs(grad, sigma, kind, sigma_data, x_dtype, f_dtype)
    return (g_x, g_f), kernels.backward_launches(grad, sigma, g_x, g_f, kind, sigma_data, sms=sms)


BACKWARD = kernel_op(
    "edm_precond_out_bwd", "(Tensor grad, Tensor sigma, int kind, float sigma_data, ScalarType? x_dtype, "
                           "ScalarType? f_dtype) -> (Tensor, Tensor)",
    outputs=_bwd_outputs, plan=_bwd_plan)


# ------------------------------------------------------------------ edm_precond_out: c_skip x + c_out F
def _outputs(x, F, sigma, kind, sigma_data):
    return torch.empty_like(x, dtype=acc_dtype(x.dtype, F.dtype))


def _setup(ctx, inputs, output):
    x, F, sigma, kind, sigma_data = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.dtypes = kind, sigma_data, (x.dtype, F.dtype)


def _backward(ctx, g):
    (sigma,) = ctx.saved_tensors
    need_x, need_f = ctx.needs_input_grad[:2]
    (g,) = sample_major(g)
    g_x, g_f = BACKWARD.variant(ctx.backend)(g, sigma, ctx.kind, ctx.sigma_data, ctx.dtypes[0] if need_x else None,
                                             ctx.dtypes[1] if need_f else None)
    return (g_x if need_x else None), (g_f if need_f else None)


def _plan(sms, x: torch.Tensor, F: torch.Tensor, sigma: torch.Tensor, kind: int, sigma_data: float):
    check_sample_major("edm_precond_out", x, F)
    out = _outputs(x, F, sigma, kind, sigma_data)
    return out, kernels.forward_launches(x, F, sigma, out, kind, sigma_data, sms=sms)


KERNEL = kernel_op("edm_precond_out", "(Tensor x, Tensor F, Tensor sigma, int kind, float sigma_data) -> Tensor",
                   outputs=_outputs, plan=_plan, setup_context=_setup, backward=_backward)


# ------------------------------------------------------------------ the public function
def edm_precond_out(x, F, sigma, *, sigma_data=SIGMA_DATA, precond="edm", backend="auto"):
    """EDM output combination ``D = c_skip(sigma) * x + c_out(sigma) * F`` in fp32 (fp64 for fp64 inputs),
    from any float x and F (e.g. a bf16 network output)."""
    check.float_tensor("x", x)
    check.float_tensor("F", F)
    n = check.batch("x", x)
    check.same_shape("F", F, "x", x)
    check.same_device("F", F, "x", x)
    sigma = check.per_sample_sigma(sigma, n, "x", x)
    check.choice("precond", precond, PRECONDS)
    backend = resolve_backend(backend, x.device, "edm_precond_out", fp64=any_fp64(x, F))
    if backend == "torch":
        return edm_precond_out_ref(x, F, sigma, precond, sigma_data)
    return KERNEL.variant(backend)(*sample_major(x, F), sigma, PRECOND_CODE[precond], float(sigma_data))


# ------------------------------------------------------------------ descriptor
def _passes(n, d, dt):
    s = Shape(n, d)
    acc = acc_dtype(dt["x"], dt["F"])
    fwd = Traffic((s.big("x", dt["x"]), s.big("F", dt["F"]), s.rows("sigma")), (s.big("D", acc),))
    bwd = Traffic((s.big("g_D", acc), s.rows("sigma")), (s.big("g_x", dt["x"]), s.big("g_F", dt["F"])))
    return fwd, bwd


def _example(shape, dtype, device):
    return (torch.randn(shape, device=device, dtype=dtype).requires_grad_(True),
            torch.randn(shape, device=device, dtype=dtype).requires_grad_(True),
            torch.exp(torch.randn(shape[0], device=device) * 1.2 - 1.2))


def _kernel_cases(shape, dtype, device):
    x = torch.randn(shape, device=device).to(dtype)
    F = torch.randn(shape, device=device).to(torch.bfloat16 if dtype != torch.float64 else dtype)
    sigma = torch.rand(shape[0], device=device) + 0.1
    cases = {f"k{kind}": (KERNEL, (x.clone().requires_grad_(True), F.clone().requires_grad_(True), sigma, kind, 0.5))
             for kind in (0, 1, 2)}
    cases["bwd"] = (BACKWARD, (x.clone(), sigma, 0, 0.5, dtype, F.dtype))
    cases["bwd_f_only"] = (BACKWARD, (x.clone(), sigma, 2, 0.5, None, F.dtype))
    return cases


def _gradcheck_cases(device):
    sigma = torch.tensor([0.3, 2.0], dtype=torch.float64, device=device)
    x, F = (torch.randn(2, 3, 4, dtype=torch.float64, device=device, requires_grad=True) for _ in range(2))
    return {kind: (lambda x, F, kind=kind: edm_precond_out(x, F, sigma, precond=kind, backend="triton"), (x, F))
            for kind in PRECONDS}


OP = Op(
    name="edm_precond_out", public=edm_precond_out, reference=edm_precond_out_ref, kernels=(KERNEL, BACKWARD),
    roles=("x", "F"), passes=_passes, example=_example,
    call=lambda inputs, backend: (edm_precond_out(*inputs, backend=backend),),
    eager=lambda x, F, sigma: (edm_precond_out_ref(x, F, sigma, "edm", SIGMA_DATA),),
    kernel_cases=_kernel_cases, gradcheck_cases=_gradcheck_cases)
