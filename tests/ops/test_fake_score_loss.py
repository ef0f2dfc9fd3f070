"""Fused fake-score (EDM denoising) loss (Triton) against the plain PyTorch reference, and the reference
against an independent transcription of the official loss."""
import pytest
import torch

import sidkernels as sk
from sidkernels._triton import run
from sidkernels.ops.fake_score_loss import KERNEL
from sidkernels.ops.fake_score_loss import triton as kernels
from sidkernels.ops.fake_score_loss.reference import fake_score_loss_ref
from tests.helpers import DTYPES, TOL, assert_close, randn

SHAPES = [(1, 1, 1, 1), (3, 1, 1, 17), (2, 3, 5, 7), (2, 3, 37, 37)]


def _loss_and_grads(backend, den, y, sigma, reduction="mean", **kw):
    leaves = [den.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)]
    loss = sk.fake_score_loss(*leaves, sigma, reduction=reduction, backend=backend, **kw)
    return loss, torch.autograd.grad(loss.sum(), leaves)


def _check(den, y, sigma, reduction="mean", backend="triton", **kw):
    """The kernels of ``backend`` against the fp64 reference: loss, gradient dtypes and values."""
    loss, grads = _loss_and_grads(backend, den, y, sigma, reduction, **kw)
    ref_loss, ref_grads = _loss_and_grads("torch", den.double(), y.double(), sigma.double(), reduction, **kw)
    coarsest = max(TOL[den.dtype], TOL[y.dtype])
    assert loss.dtype == torch.float32
    assert_close(loss, ref_loss, tol=max(coarsest / 4, TOL[torch.float32]))
    for g, g_ref, t in zip(grads, ref_grads, (den, y)):
        assert g.dtype == t.dtype
        assert_close(g, g_ref, tol=max(TOL[g.dtype], coarsest / 4))


def _sigma(n, device):
    return sk.sample_sigma_lognormal(n, device=device)


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_fp32(shape, device):
    _check(randn(shape, device=device), randn(shape, device=device), _sigma(shape[0], device))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dtypes_and_reductions(dtype, reduction, device):
    shape = (3, 3, 6, 5)
    _check(randn(shape, dtype, device), randn(shape, dtype, device), _sigma(3, device), reduction=reduction)


def test_fp32_denoised_bf16_target(device):
    shape = (3, 3, 8, 8)
    _check(randn(shape, torch.float32, device), randn(shape, torch.bfloat16, device), _sigma(3, device),
           sigma_data=0.7, loss_scale=3.0)


@pytest.mark.parametrize("layout", ["strided", "channels_last"])
def test_layouts(layout, device):
    shape = (3, 3, 7, 6)
    _check(randn(shape, device=device, layout=layout), randn(shape, device=device, layout=layout),
           _sigma(3, device))


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 3, 37, 37)])
def test_nan_rows_are_dropped(shape, device):
    den, y = randn(shape, device=device), randn(shape, device=device)
    den[1, 0, 0, 0] = float("nan")
    y[2, -1, -1, -1] = float("nan")
    sigma = _sigma(shape[0], device)
    loss, grads = _loss_and_grads("triton", den, y, sigma, reduction="none")
    assert loss[1] == 0 and loss[2] == 0
    for g in grads:
        assert torch.isfinite(g).all() and (g[1:3] == 0).all()
    ref_loss, _ = _loss_and_grads("torch", den.double(), y.double(), sigma.double(), reduction="none")
    assert_close(loss[[0] + list(range(3, shape[0]))], ref_loss[[0] + list(range(3, shape[0]))].float())


def test_no_grad_writes_no_residual(device):
    den, y = randn((2, 3, 4, 4), device=device), randn((2, 3, 4, 4), device=device)
    sigma = _sigma(2, device)
    loss, scale, r = KERNEL.variant("triton")(den, y, sigma, 0.5, False)
    assert r.numel() == 0
    assert_close(loss, fake_score_loss_ref(den.double(), y.double(), sigma.double()), tol=TOL[torch.float32])
    lam = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
    assert_close(scale, 2 * lam)


@pytest.mark.large
@pytest.mark.parametrize("shape", [(1, 3, 256, 256), (512, 3, 32, 32), (64, 4, 128, 128)])
def test_large_shapes(shape, device):
    _check(randn(shape, torch.bfloat16, device), randn(shape, torch.bfloat16, device), _sigma(shape[0], device))


def official_fake_loss(d, y, sigma, batch_total, sigma_data=0.5):
    """The official loss: lambda(sigma) (D - y)^2, NaN samples dropped by boolean indexing, summed, 1/B."""
    keep = ~(torch.isnan(y).flatten(1).any(1) | torch.isnan(d).flatten(1).any(1))
    lam = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    return (lam[keep].view(-1, 1, 1, 1) * (d[keep] - y[keep]) ** 2).sum() / batch_total


@pytest.mark.parametrize("nan_rows", [(), (2,)])
def test_reference_matches_the_official_loss(nan_rows):
    d, y = (torch.randn(4, 3, 5, 5, dtype=torch.float64) for _ in range(2))
    for row in nan_rows:
        d[row, 0, 0, 0] = float("nan")
    d.requires_grad_(True)
    sigma = torch.rand(4, dtype=torch.float64) * 3 + 0.01
    ours = fake_score_loss_ref(d, y, sigma).mean()
    theirs = official_fake_loss(d, y, sigma, batch_total=4)
    assert_close(ours, theirs)
    g_ours, = torch.autograd.grad(ours, d)
    g_theirs, = torch.autograd.grad(theirs, d)
    assert torch.isfinite(g_ours).all()
    assert_close(g_ours, g_theirs)


def test_split_reduction_is_deterministic(device):
    den, y = torch.randn(2, 5000, device=device), torch.randn(2, 5000, device=device)
    sigma = torch.rand(2, device=device) + 0.1

    def launch():
        r, loss, scale = torch.empty_like(den), torch.empty(2, device=device), torch.empty(2, device=device)
        run(kernels.launches(den, y, sigma, r, loss, scale, 0.5, block=256), den.device)
        return loss

    first = launch()
    assert all(torch.equal(first, launch()) for _ in range(2))
    lam = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(first, lam * ((den - y) ** 2).sum(1), rtol=1e-5, atol=1e-5)
