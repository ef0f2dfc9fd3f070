"""Fused noise injection (Triton): reference, RNG stream, determinism, statistics, backward."""
import numpy as np
import pytest
import torch

import sidkernels as sk
from sidkernels.ref import add_noise_ref
from sidkernels.ref.philox import philox_randn
from tests.helpers import DTYPES, TOL, assert_close, randn


def _noise(x, sigma, **kw):
    return sk.add_noise(x, sigma, return_net_input=True, return_eps=True, backend="triton", **kw)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 3, 5, 7), (2, 3, 37, 37)])
@pytest.mark.parametrize("precond", ["edm", "vp", "ve"])
def test_matches_reference_given_eps(shape, precond, device):
    x, sigma = randn(shape, device=device), sk.sample_sigma_sid(shape[0], device=device)
    xt, net, eps = _noise(x, sigma, precond=precond, sigma_data=0.6)
    ref_xt, ref_net = add_noise_ref(x, sigma, eps, precond=precond, sigma_data=0.6)
    assert_close(xt, ref_xt)
    assert_close(net, ref_net)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net_dtype", [torch.bfloat16, torch.float32])
def test_dtypes(dtype, net_dtype, device):
    x, sigma = randn((3, 3, 6, 5), dtype, device), sk.sample_sigma_sid(3, device=device)
    xt, net, eps = _noise(x, sigma, net_dtype=net_dtype)
    assert xt.dtype == dtype and net.dtype == net_dtype and eps.dtype == torch.float32
    ref_xt, ref_net = add_noise_ref(x.double(), sigma.double(), eps.double())
    assert_close(xt, ref_xt.to(dtype).double(), tol=TOL[dtype])
    assert_close(net, ref_net.to(net_dtype).double(), tol=max(TOL[dtype], TOL[net_dtype]))


@pytest.mark.parametrize("layout", ["strided", "channels_last"])
def test_layouts(layout, device):
    x, sigma = randn((2, 3, 7, 6), device=device, layout=layout), sk.sample_sigma_sid(2, device=device)
    xt, net, eps = _noise(x, sigma)
    assert_close(xt, add_noise_ref(x, sigma, eps)[0])
    if layout == "channels_last":
        assert xt.is_contiguous(memory_format=torch.channels_last)


def test_eps_is_the_documented_philox_stream(device):
    """Bit-exact against the numpy oracle (fp32 transcendental ulps may differ on a GPU)."""
    x = torch.zeros(3, 2, 40, 41, device=device)
    seed = (7 << 40) + 12345
    _, eps = sk.add_noise(x, 1.0, seed=seed, return_eps=True, backend="triton")
    expected = torch.from_numpy(philox_randn(seed, np.arange(x.numel()))).view_as(x).to(device)
    if device.type == "cpu":
        assert torch.equal(eps, expected)
    else:
        assert_close(eps, expected, tol=1e-6)


def test_same_seed_same_bits_other_seed_differs(device):
    x, sigma = randn((2, 3, 8, 8), device=device), sk.sample_sigma_sid(2, device=device)
    a = sk.add_noise(x, sigma, seed=11, backend="triton")
    b = sk.add_noise(x, sigma, seed=11, backend="triton")
    c = sk.add_noise(x, sigma, seed=12, backend="triton")
    assert torch.equal(a, b)
    assert (a != c).float().mean() > 0.99


def test_default_seed_follows_torch_manual_seed(device):
    x = randn((2, 3, 8, 8), device=device)
    torch.manual_seed(5)
    a = sk.add_noise(x, 1.0, backend="triton")
    b = sk.add_noise(x, 1.0, backend="triton")
    torch.manual_seed(5)
    c = sk.add_noise(x, 1.0, backend="triton")
    assert torch.equal(a, c) and not torch.equal(a, b)


def test_seed_tensor_on_device(device):
    x = randn((2, 50), device=device)
    seed = torch.tensor([99], dtype=torch.int64, device=device)
    by_tensor = sk.add_noise(x, 0.5, seed=seed, backend="triton")
    assert torch.equal(by_tensor, sk.add_noise(x, 0.5, seed=99, backend="triton"))


def test_eps_statistics(device):
    from scipy import stats
    x = torch.zeros(4, 25_000, device=device)
    _, eps = sk.add_noise(x, 1.0, return_eps=True, backend="triton")
    e = eps.double().flatten()
    assert abs(e.mean().item()) < 0.02 and abs(e.std().item() - 1) < 0.02
    assert stats.kstest(e.cpu().numpy(), "norm").statistic < 0.01
    # neighbouring elements are independent
    assert abs(torch.corrcoef(torch.stack([e[:-1], e[1:]]))[0, 1].item()) < 0.02


def test_backward_needs_no_eps(device):
    x = randn((2, 3, 8, 8), device=device, requires_grad=True)
    sigma = sk.sample_sigma_sid(2, device=device)
    saved = []

    def pack(t):
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        xt, net = sk.add_noise(x, sigma, return_net_input=True, backend="triton")
    assert all(s.numel() < x.numel() for s in map(torch.Size, saved)), f"saved full-size tensors: {saved}"
    g_xt, g_net = torch.randn_like(xt), torch.randn_like(net)
    (gx,) = torch.autograd.grad([xt, net], [x], [g_xt, g_net])
    c_in = (sigma ** 2 + 0.25).rsqrt().view(-1, 1, 1, 1)
    assert_close(gx, g_xt + c_in * g_net)
    (gx_only,) = torch.autograd.grad(sk.add_noise(x, sigma, backend="triton"), [x], [g_xt])
    assert torch.equal(gx_only, g_xt)


@pytest.mark.large
@pytest.mark.parametrize("shape", [(64, 4, 128, 128), (1, 3, 256, 256)])
def test_large_shapes(shape, device):
    x, sigma = randn(shape, torch.bfloat16, device), sk.sample_sigma_sid(shape[0], device=device)
    xt, net, eps = _noise(x, sigma)
    ref_xt, ref_net = add_noise_ref(x.double(), sigma.double(), eps.double())
    assert_close(xt, ref_xt.bfloat16().double(), tol=TOL[torch.bfloat16])
    assert_close(net, ref_net.bfloat16().double(), tol=TOL[torch.bfloat16])
