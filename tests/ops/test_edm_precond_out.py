"""The EDM/VP/VE output combination (Triton) against the plain PyTorch reference."""
import pytest
import torch

import sidkernels as sk
from sidkernels.ops._precond import coefficients
from tests.helpers import DTYPES, TOL, assert_close, randn

KINDS = ["edm", "vp", "ve"]


def _grads(out, inputs, g):
    return torch.autograd.grad(out, inputs, g)


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
    _, c_out, _, _ = coefficients(sigma.double())
    assert_close(gF, c_out.view(-1, 1, 1, 1).expand_as(F).to(f_dtype).double(), tol=TOL[f_dtype])


def test_precond_out_grad_only_for_F(device):
    x = randn((2, 3, 4, 4), device=device)
    F = randn((2, 3, 4, 4), device=device, requires_grad=True)
    sigma = sk.sample_sigma_lognormal(2, device=device)
    (gF,) = _grads(sk.edm_precond_out(x, F, sigma, backend="triton"), [F], torch.ones(2, 3, 4, 4, device=device))
    assert_close(gF, coefficients(sigma)[1].view(-1, 1, 1, 1).expand_as(F))


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
