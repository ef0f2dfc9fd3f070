"""Noise injection ``x_t = x + sigma[n] eps`` with eps ~ N(0, I) drawn inside the kernel, optionally with the
network input ``c_in(sigma) x_t`` (docs/ops.md, "Noise injection").

Kernel op ``add_noise`` -> (x_t, net_input, eps): ``net_input`` is empty unless ``net_dtype`` is given, ``eps``
is empty unless ``want_eps``.  Backward: ``dx = dx_t + c_in(sigma) * dnet_input`` (the kernel op
``edm_precond_in_bwd``; no eps is needed).
"""
from __future__ import annotations

from typing import Optional

import torch

from sidkernels import _checks as check
from sidkernels._abi import PRECOND_CODE, PRECONDS, SIGMA_DATA, acc_dtype
from sidkernels._backend import resolve_backend
from sidkernels.ops._common import any_fp64, seed_tensor
from sidkernels.ops._layout import check_sample_major, nothing, sample_major
from sidkernels.ops._registry import Op, kernel_op
from sidkernels.ops._traffic import Shape, Traffic
from sidkernels.ops.add_noise import triton as kernels
from sidkernels.ops.add_noise.reference import add_noise_ref
from sidkernels.ops.edm_precond_in import BACKWARD as PRECOND_IN_BWD


def _outputs(x, sigma, seed, kind, sigma_data, net_dtype, want_eps):
    acc = acc_dtype(x.dtype)
    xt = torch.empty_like(x)
    net = torch.empty_like(x, dtype=net_dtype) if net_dtype is not None else nothing(x)
    eps = torch.empty_like(x, dtype=acc) if want_eps else nothing(x, acc)
    return xt, net, eps


def _setup(ctx, inputs, output):
    x, sigma, _, kind, sigma_data, net_dtype, _ = inputs
    ctx.save_for_backward(sigma)
    ctx.kind, ctx.sigma_data, ctx.x_dtype, ctx.has_net = kind, sigma_data, x.dtype, net_dtype is not None
    ctx.mark_non_differentiable(output[2])


def _backward(ctx, g_xt, g_net, g_eps):
    if not (ctx.has_net and g_net is not None):
        return g_xt
    (sigma,) = ctx.saved_tensors
    g_net, addend = sample_major(g_net, g_xt) if g_xt is not None else (sample_major(g_net)[0], nothing(g_net))
    return PRECOND_IN_BWD.variant(ctx.backend)(g_net, sigma, addend, ctx.kind, ctx.sigma_data, ctx.x_dtype)


def _plan(sms, x: torch.Tensor, sigma: torch.Tensor, seed: torch.Tensor, kind: int, sigma_data: float,
            net_dtype: Optional[torch.dtype], want_eps: bool):
    check_sample_major("add_noise", x)
    xt, net, eps = _outputs(x, sigma, seed, kind, sigma_data, net_dtype, want_eps)
    return (xt, net, eps), kernels.launches(x, sigma, seed, xt, net, eps, kind, sigma_data, sms=sms)


KERNEL = kernel_op(
    "add_noise", "(Tensor x, Tensor sigma, Tensor seed, int kind, float sigma_data, ScalarType? net_dtype, "
                 "bool want_eps) -> (Tensor, Tensor, Tensor)",
    outputs=_outputs, plan=_plan, setup_context=_setup, backward=_backward)


def _torch_noise(x: torch.Tensor, seed) -> torch.Tensor:
    dtype = acc_dtype(x.dtype)
    if seed is None:
        return torch.randn_like(x, dtype=dtype)
    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed) if isinstance(seed, int) else int(seed_tensor(seed, x.device).item()))
    return torch.randn(x.shape, generator=gen, dtype=dtype, device=x.device)


# ------------------------------------------------------------------ the public function
def add_noise(x, sigma, *, seed=None, return_net_input=False, sigma_data=SIGMA_DATA, net_dtype=None,
              precond="edm", return_eps=False, backend="auto"):
    """Noise injection ``x_t = x + sigma[n] * eps`` with eps ~ N(0, I) drawn inside the kernel.

    Args:
        x: clean samples ``[N, ...]`` (fp16/bf16/fp32/fp64).
        sigma: noise level per sample: ``[N]``, ``[N, 1, ...]``, a 0-dim tensor or a number; > 0.
        seed: ``None`` (drawn from torch's generator on x's device, so ``torch.manual_seed`` governs it),
            an ``int`` or an int64 device tensor.  The kernels' eps depends only on the seed and each
            element's sample and position (the stream of :mod:`sidkernels.ops.add_noise.reference`); the
            torch backend draws ``torch.randn`` instead (another stream).
        return_net_input: also return the network input ``c_in(sigma) * x_t`` in ``net_dtype``.
        precond: which ``c_in`` the network input uses: ``"edm"`` (with ``sigma_data``), ``"vp"``, ``"ve"``.
        return_eps: also return the eps that was drawn (debug/test output; costs one more write).

    Returns ``x_t`` (x's dtype), followed by the network input and eps when asked for.
    """
    check.float_tensor("x", x)
    n = check.batch("x", x)
    sigma = check.per_sample_sigma(sigma, n, "x", x)
    check.choice("precond", precond, PRECONDS)
    if net_dtype is not None and net_dtype not in check.FLOAT_DTYPES:
        raise TypeError(f"net_dtype must be a floating dtype, got {net_dtype}")
    net_dtype = (net_dtype or x.dtype) if return_net_input else None
    backend = resolve_backend(backend, x.device, "add_noise", fp64=any_fp64(x) or net_dtype == torch.float64)
    if backend == "torch":
        eps = _torch_noise(x, seed)
        xt, net = add_noise_ref(x, sigma, eps, precond=precond, sigma_data=sigma_data, net_dtype=net_dtype)
    else:
        xt, net, eps = KERNEL.variant(backend)(*sample_major(x), sigma, seed_tensor(seed, x.device),
                                               PRECOND_CODE[precond], float(sigma_data), net_dtype, bool(return_eps))
    outs = (xt,) + ((net,) if return_net_input else ()) + ((eps,) if return_eps else ())
    return outs[0] if len(outs) == 1 else outs


# ------------------------------------------------------------------ descriptor
def _passes(n, d, dt):
    """eps is drawn in-kernel and never stored, so it is not traffic."""
    s = Shape(n, d)
    fwd = Traffic((s.big("x", dt["x"]), s.rows("sigma")), (s.big("x_t", dt["x"]), s.big("net_in", dt["net"])))
    bwd = Traffic((s.big("g_x_t", dt["x"]), s.big("g_net_in", dt["net"]), s.rows("sigma")), (s.big("g_x", dt["x"]),))
    return fwd, bwd


def _example(shape, dtype, device):
    return (torch.randn(shape, device=device, dtype=dtype).requires_grad_(True),
            torch.exp(torch.randn(shape[0], device=device) * 1.2 - 1.2))


def _eager(x, sigma):
    """The reference as ``backend="torch"`` runs it: eps from ``torch.randn_like`` first."""
    return add_noise_ref(x, sigma, torch.randn_like(x, dtype=acc_dtype(x.dtype)), net_dtype=x.dtype)


def _kernel_cases(shape, dtype, device):
    x = torch.randn(shape, device=device).to(dtype)
    sigma = torch.rand(shape[0], device=device) + 0.1
    seed = torch.tensor([5], device=device)
    net = torch.bfloat16 if dtype != torch.float64 else torch.float64
    cases = {f"k{kind}": (KERNEL, (x.clone().requires_grad_(True), sigma, seed, kind, 0.5, net, True))
             for kind in (0, 1, 2)}
    cases["plain"] = (KERNEL, (x, sigma, seed, 0, 0.5, None, False))
    return cases


def _gradcheck_cases(device):
    x = torch.randn(2, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    sigma = torch.tensor([0.3, 2.0], dtype=torch.float64, device=device)
    return {"net_input": (lambda x: add_noise(x, sigma, seed=3, return_net_input=True, backend="triton"), (x,))}


def _check(inputs, backend):
    """x_t and the network input against the reference given the eps the kernel drew; the gradient against
    its closed form ``g_x_t + c_in g_net`` (eps is random, so there is no fp64 rerun to compare with)."""
    x, sigma = (t.detach() for t in inputs)
    leaf = x.clone().requires_grad_(True)
    xt, net, eps = add_noise(leaf, sigma, seed=1234, return_net_input=True, net_dtype=torch.bfloat16,
                             return_eps=True, backend=backend)
    ref_xt, ref_net = add_noise_ref(x.double(), sigma.double(), eps.double())
    g_xt, g_net = torch.randn_like(xt), torch.randn_like(net)
    (gx,) = torch.autograd.grad([xt, net], [leaf], [g_xt, g_net])
    c_in = (sigma.double() ** 2 + SIGMA_DATA ** 2).rsqrt().view(-1, *[1] * (x.dim() - 1))
    return [("x_t", xt, ref_xt.to(xt.dtype)), ("net_input", net, ref_net.to(net.dtype)),
            ("grad x", gx, (g_xt.double() + c_in * g_net.double()).to(gx.dtype))]


OP = Op(
    name="add_noise", public=add_noise, reference=add_noise_ref, kernels=(KERNEL,), roles=("x", "net"),
    passes=_passes, example=_example,
    call=lambda inputs, backend: add_noise(*inputs, return_net_input=True, net_dtype=inputs[0].dtype,
                                           backend=backend),
    eager=_eager, kernel_cases=_kernel_cases, gradcheck_cases=_gradcheck_cases, check=_check)
