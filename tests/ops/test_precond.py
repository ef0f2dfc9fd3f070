"""Fused EDM/VP/VE preconditioning (Triton) against the plain PyTorch reference."""
import pytest
import torch

import sidkernels as sk
from tests.helpers import DTYPES, TOL, assert_close, randn

KINDS = ["edm", "vp", "ve"]


def _grads(out, inputs, g):
    return torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 3, 5, 7), (2, 3, 37, 37)])
@pytest.mark.parametrize("kind", KINDS)
def test_precond_in(shape, kind, device):
    x = randn(shape, device=device, requires_grad=True)
    sigma = sk.sample_sigma_sid(shape[0], device=device)
    y, c_noise = sk.edm_precond_in(x, sigma, precond=kind, sigma_data=0.7, backend="triton")
    ref_y, ref_c = sk.edm_precond_in(x, sigma.double(), precond=kind, sigma_data=0.7, backend="torch")
    assert_close(y, ref_y)
    assert c_noise.dtype == torch.float32 and c_noise.shape == (shape[0],)
    assert_close(c_noise, sk.ref.coefficients(sigma.double(), kind, 0.7)[3].float(), tol=1e-6)
    g = torch.randn_like(y)
    assert_close(_grads(y, x, g)[0], _grads(ref_y, x, g)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net_dtype", [None, torch.bfloat16, torch.float16])
def test_precond_in_dtypes(dtype, net_dtype, device):
    x = randn((3, 3, 6, 5), dtype, device, requires_grad=True)
    sigma = sk.sample_sigma_lognormal(3, device=device)
    y, _ = sk.edm_precond_in(x, sigma, dtype=net_dtype, backend="triton")
    assert y.dtype == (net_dtype or dtype)
    ref = sk.edm_precond_in(x.detach().double(), sigma, backend="torch")[0]
    assert_close(y, ref.to(y.dtype).double(), tol=TOL[y.dtype])
    gx = _grads(y, x, torch.ones_like(y))[0]
    assert gx.dtype == dtype
    c_in = (sigma ** 2 + 0.25).rsqrt().view(-1, 1, 1, 1).double()
    assert_close(gx, c_in.expand_as(x).to(dtype).double(), tol=TOL[dtype])


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 3, 5, 7), (2, 3, 37, 37)])
@pytest.mark.parametrize("kind", KINDS)
def test_precond_out(shape, kind, device):
    x = randn(shape, device=device, requires_grad=True)
    F = randn(shape, device=device, requires_grad=True)
    sigma = sk.sample_sigma_sid(shape[0], device=device)
    D = sk.edm_precond_out(x, F, sigma, precond=kind, backend="triton")
    ref = sk.edm_precond_out(x, F, sigma.double(), precond=kind, backend="torch")
    assert D.dtype == torch.float32
    assert_close(D, ref)
    g = torch.randn_like(D)
    for ours, theirs in zip(_grads(D, [x, F], g), _grads(ref, [x, F], g)):
        assert_close(ours, theirs)


@pytest.mark.parametrize("f_dtype", DTYPES)
def test_precond_out_low_precision_network_output(f_dtype, device):
    """fp32 x with a bf16/fp16 network output F: D in fp32, grads in each input's dtype."""
    x = randn((3, 3, 6, 6), device=device, requires_grad=True)
    F = randn((3, 3, 6, 6), f_dtype, device, requires_grad=True)
    sigma = sk.sample_sigma_lognormal(3, device=device)
    D = sk.edm_precond_out(x, F, sigma, backend="triton")
    assert D.dtype == torch.float32
    assert_close(D, sk.edm_precond_out(x.double(), F.double(), sigma, backend="torch"))
    gx, gF = _grads(D, [x, F], torch.ones_like(D))
    assert gx.dtype == torch.float32 and gF.dtype == f_dtype
    _, c_out, _, _ = sk.ref.coefficients(sigma.double())
    assert_close(gF, c_out.view(-1, 1, 1, 1).expand_as(F).to(f_dtype).double(), tol=TOL[f_dtype])


def test_precond_out_grad_only_for_F(device):
    x = randn((2, 3, 4, 4), device=device)
    F = randn((2, 3, 4, 4), device=device, requires_grad=True)
    sigma = sk.sample_sigma_lognormal(2, device=device)
    (gF,) = _grads(sk.edm_precond_out(x, F, sigma, backend="triton"), [F], torch.ones(2, 3, 4, 4, device=device))
    assert_close(gF, sk.ref.coefficients(sigma)[1].view(-1, 1, 1, 1).expand_as(F))


@pytest.mark.parametrize("layout", ["strided", "channels_last"])
def test_layouts(layout, device):
    x = randn((2, 3, 7, 6), device=device, layout=layout)
    F = randn((2, 3, 7, 6), device=device, layout=layout)
    sigma = sk.sample_sigma_lognormal(2, device=device)
    D = sk.edm_precond_out(x, F, sigma, backend="triton")
    assert_close(D, sk.edm_precond_out(x, F, sigma, backend="torch"))
    y, _ = sk.edm_precond_in(x, sigma, backend="triton")
    assert_close(y, sk.edm_precond_in(x, sigma, backend="torch")[0])
    if layout == "channels_last":
        assert D.is_contiguous(memory_format=torch.channels_last)
