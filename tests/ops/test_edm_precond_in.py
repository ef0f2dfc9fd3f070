"""EDM/VP/VE input scaling (Triton) against the plain PyTorch reference and the coefficient table."""
import pytest
import torch

import sidkernels as sk
from sidkernels._triton import run
from sidkernels.ops._precond import coefficients
from sidkernels.ops.edm_precond_in import triton as kernels
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
    assert_close(c_noise, coefficients(sigma.double(), kind, 0.7)[3].float(), tol=1e-6)
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



def test_coefficients_closed_forms():
    """The coefficient table at hand-picked sigmas: EDM's at sigma = 2.5 (the one-step generator's level), VP's
    c_noise against its schedule sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) inverted at t = 0.3."""
    s = torch.tensor([2.5], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = coefficients(s, "edm", 0.5)
    assert c_skip.item() == pytest.approx(0.25 / 6.5) and c_out.item() == pytest.approx(1.25 / 6.5 ** 0.5)
    assert c_in.item() == pytest.approx(1 / 6.5 ** 0.5) and c_noise.item() == pytest.approx(0.25 * 0.9162907318741551)
    t = 0.3
    sigma_vp = torch.tensor([(torch.tensor(0.5 * 19.9 * t * t + 0.1 * t, dtype=torch.float64).exp() - 1).sqrt()])
    assert coefficients(sigma_vp, "vp")[3].item() == pytest.approx(999 * t, rel=1e-12)
    assert coefficients(s, "ve")[3].item() == pytest.approx(torch.log(torch.tensor(1.25)).item())


@pytest.mark.parametrize("block", [16, 256])
def test_block_does_not_change_results(block, device):
    x, sigma = torch.randn(3, 2000, device=device), torch.rand(3, device=device) + 0.1

    def launch(blk):
        y, c = torch.empty_like(x, dtype=torch.bfloat16), torch.empty(3, device=device)
        run(kernels.forward_launches(x, sigma, y, c, 1, 0.5, block=blk), x.device)
        return y, c

    for ours, whole in zip(launch(block), launch(4096)):
        assert torch.equal(ours, whole)
