"""Fused SiD generator loss (Triton) against the plain PyTorch reference, and the reference against an
independent transcription of the official loss."""
import pytest
import torch

import sidkernels as sk
from sidkernels._triton import run
from sidkernels.ops.sid_generator_loss import KERNEL
from sidkernels.ops.sid_generator_loss import triton as kernels
from sidkernels.ops.sid_generator_loss.reference import sid_generator_loss_ref
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
    loss, scale, ga, gb, gx = KERNEL.variant("triton")(a, b, x, 1.2, 1e-5, True, False, False, True)
    assert ga.numel() == 0 and gb.numel() == 0 and gx.shape == x.shape
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(sk.sid_generator_loss(a, b, x, backend="triton"), [x])
    ref = _loss_and_grads("torch", [a.double(), b.double(), x.detach().double()])[1][2]
    assert_close(g, ref, tol=TOL[torch.float32])


@pytest.mark.large
@pytest.mark.parametrize("shape", [(1, 3, 256, 256), (512, 3, 32, 32), (4, 4, 128, 128), (64, 4, 128, 128)])
def test_large_shapes(shape, device):
    _check([randn(shape, torch.bfloat16, device) for _ in range(3)])


# ------------------------------------------------------------------ the reference against the official formulation
def official_generator_loss(a, b, x, alpha, batch_total):
    """The official loss: drop NaN samples by boolean indexing, w = no-grad clamp(mean|x - a|, 1e-5), sum, 1/B."""
    keep = ~(torch.isnan(x).flatten(1).any(1) | torch.isnan(a).flatten(1).any(1) | torch.isnan(b).flatten(1).any(1))
    a, b, x = a[keep], b[keep], x[keep]
    with torch.no_grad():
        w = (x - a).abs().mean(dim=[1, 2, 3], keepdim=True).clip(min=1e-5)
    loss = (a - b) * ((a - x) - alpha * (a - b)) / w
    return loss.sum() / batch_total


@pytest.mark.parametrize("alpha", [1.0, 1.2, 0.5])
@pytest.mark.parametrize("nan_rows", [(), (1,), (0, 3)])
def test_reference_matches_the_official_loss(alpha, nan_rows):
    with torch.no_grad():
        poisoned = [torch.randn(5, 3, 4, 6, dtype=torch.float64) for _ in range(3)]
        for i, row in enumerate(nan_rows):
            poisoned[i % 3][row, 1, 2, 3] = float("nan")
    leaves = [p.requires_grad_(True) for p in poisoned]
    ours = sid_generator_loss_ref(*leaves, alpha).mean()
    ours_grads = torch.autograd.grad(ours, leaves)
    theirs = official_generator_loss(*leaves, alpha, batch_total=5)
    theirs_grads = torch.autograd.grad(theirs, leaves, allow_unused=True)
    assert_close(ours, theirs)
    for g_ours, g_theirs in zip(ours_grads, theirs_grads):
        assert torch.isfinite(g_ours).all()
        assert_close(g_ours, g_theirs if g_theirs is not None else torch.zeros_like(g_ours))
    for row in nan_rows:
        assert all((g[row] == 0).all() for g in ours_grads)


def test_reference_alpha_one_identity():
    """For alpha = 1 the loss is (a - b)(b - x) / w."""
    a, b, x = (torch.randn(3, 2, 5, 5, dtype=torch.float64) for _ in range(3))
    w = (x - a).abs().mean(dim=[1, 2, 3])
    assert_close(sid_generator_loss_ref(a, b, x, 1.0), ((a - b) * (b - x)).sum(dim=[1, 2, 3]) / w)


def test_normalised_gradient_holds_w_fixed(device):
    """With normalisation the gradient equals that of the loss with w frozen at its forward value (fp64; alpha
    = 1.25 is exact in fp32, the kernels' scalar type)."""
    a, b, x = (torch.randn(3, 2, 5, dtype=torch.float64, device=device, requires_grad=True) for _ in range(3))
    w = (x - a).detach().abs().mean(dim=(1, 2)).clamp_min(1e-5)
    frozen = ((a - b) * ((a - x) - 1.25 * (a - b))).sum(dim=(1, 2)) / w
    loss = sk.sid_generator_loss(a, b, x, alpha=1.25, reduction="sum", backend="triton")
    for g1, g2 in zip(torch.autograd.grad(loss, [a, b, x]), torch.autograd.grad(frozen.sum(), [a, b, x])):
        torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block", [256, 1024, 4096])
def test_split_reduction_matches_a_single_block(block, device):
    a, b, x = (torch.randn(3, 3000, device=device) for _ in range(3))
    x[1, 5] = float("nan")

    def launch(blk):
        out = [torch.empty_like(a) for _ in range(3)] + [torch.empty(3, device=device) for _ in range(2)]
        run(kernels.launches(a, b, x, *out[:3], out[3], out[4], 1.2, 1e-5, True, block=blk), a.device)
        return out

    split, whole = launch(block), launch(4096)
    for s, w in zip(split[:3], whole[:3]):
        torch.testing.assert_close(s, w, rtol=0, atol=0, equal_nan=True)  # elementwise: bitwise identical
    for s, w in zip(split[3:], whole[3:]):
        torch.testing.assert_close(s, w, rtol=1e-5, atol=1e-6)  # partial sums differ only in order
    assert split[3][1] == 0 and split[4][1] == 0
