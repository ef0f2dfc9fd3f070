"""Fused SiD generator loss (Triton) against the plain PyTorch reference."""
import pytest
import torch

import sidkernels as sk
from sidkernels.ops import kernel_op
from tests.helpers import DTYPES, TOL, assert_close, randn

SHAPES = [(1, 1, 1, 1), (3, 1, 1, 17), (2, 3, 5, 7), (4, 3, 8, 8), (2, 3, 37, 37)]  # last: > one 4096 block


def _loss_and_grads(backend, inputs, reduction="mean", **kw):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    loss = sk.sid_generator_loss(*leaves, reduction=reduction, backend=backend, **kw)
    grads = torch.autograd.grad(loss.sum(), leaves)
    return loss, grads


def _check(inputs, reduction="mean", backend="triton", **kw):
    """The kernels of ``backend`` against the fp64 reference: loss, gradient dtypes/shapes and values."""
    loss, grads = _loss_and_grads(backend, inputs, reduction, **kw)
    ref_loss, ref_grads = _loss_and_grads("torch", [t.double() for t in inputs], reduction, **kw)
    assert loss.dtype == torch.float32
    coarsest = max(TOL[t.dtype] for t in inputs)
    assert_close(loss, ref_loss, tol=max(coarsest / 4, TOL[torch.float32]))
    for g, g_ref, t in zip(grads, ref_grads, inputs):
        assert g.dtype == t.dtype and g.shape == t.shape
        assert_close(g, g_ref, tol=max(TOL[g.dtype], coarsest / 4))
    return loss, grads


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [1.0, 1.2])
def test_matches_reference_fp32(shape, alpha, device):
    _check([randn(shape, device=device) for _ in range(3)], alpha=alpha)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dtypes_and_reductions(dtype, reduction, device):
    _check([randn((3, 3, 6, 5), dtype, device) for _ in range(3)], reduction=reduction)


def test_mixed_input_dtypes(device):
    """Teacher output bf16, fake output fp32, generator sample fp16: one kernel, fp32 math."""
    shape = (3, 2, 9, 9)
    _check([randn(shape, torch.bfloat16, device), randn(shape, torch.float32, device),
            randn(shape, torch.float16, device)])


@pytest.mark.parametrize("layout", ["strided", "channels_last"])
def test_layouts(layout, device):
    _check([randn((3, 3, 7, 6), device=device, layout=layout) for _ in range(3)])


def test_mixed_layouts(device):
    shape = (2, 3, 6, 6)
    _check([randn(shape, device=device, layout="channels_last"), randn(shape, device=device),
            randn(shape, device=device, layout="strided")])


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 3, 37, 37)])
def test_nan_rows_are_dropped(shape, device):
    a, b, x = (randn(shape, device=device) for _ in range(3))
    a[1, 0, 0, 0] = float("nan")
    x[2, -1, -1, -1] = float("nan")
    loss, grads = _loss_and_grads("triton", [a, b, x], reduction="none")
    assert loss[1] == 0 and loss[2] == 0
    for g in grads:
        assert torch.isfinite(g).all()
        assert (g[1] == 0).all() and (g[2] == 0).all()
    clean = [0] + list(range(3, shape[0]))
    ref_loss, ref_grads = _loss_and_grads("torch", [t.double() for t in (a, b, x)], reduction="none")
    assert_close(loss[clean], ref_loss[clean].float(), tol=TOL[torch.float32])
    for g, g_ref in zip(grads, ref_grads):
        assert_close(g[clean], g_ref[clean].float(), tol=TOL[torch.float32])


def test_mean_counts_dropped_rows(device):
    a, b, x = (randn((4, 1, 3, 3), device=device) for _ in range(3))
    b[0, 0, 0, 0] = float("nan")
    per_sample = sk.sid_generator_loss(a, b, x, reduction="none", backend="triton")
    mean = sk.sid_generator_loss(a, b, x, reduction="mean", backend="triton")
    assert torch.allclose(mean, per_sample.sum() / 4)


def test_loss_scale_and_options(device):
    inputs = [randn((3, 2, 4, 4), device=device) for _ in range(3)]
    _check(inputs, loss_scale=100.0, normalize=False, weight_clip=1e-3)
    _check(inputs, weight_clip=10.0)  # the clip binds: w = 10 for every sample


def test_only_needed_gradients(device):
    """Only inputs that require grad get a gradient buffer; the others are not written."""
    a, b, x = (randn((2, 3, 4, 4), device=device) for _ in range(3))
    loss, scale, ga, gb, gx = kernel_op("sid_loss", "triton")(a, b, x, 1.2, 1e-5, True, False, False, True)
    assert ga.numel() == 0 and gb.numel() == 0 and gx.shape == x.shape
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(sk.sid_generator_loss(a, b, x, backend="triton"), [x])
    ref = _loss_and_grads("torch", [a.double(), b.double(), x.detach().double()])[1][2]
    assert_close(g, ref, tol=TOL[torch.float32])


@pytest.mark.large
@pytest.mark.parametrize("shape", [(1, 3, 256, 256), (512, 3, 32, 32), (4, 4, 128, 128), (64, 4, 128, 128)])
def test_large_shapes(shape, device):
    _check([randn(shape, torch.bfloat16, device) for _ in range(3)])
