"""Fused per-sample distances (Triton) against the plain PyTorch reference, and the reference against
hand-computed values."""
import math

import pytest
import torch

import sidkernels as sk
from sidkernels._triton import run
from sidkernels.ops.sample_distance import BACKWARD, KERNEL
from sidkernels.ops.sample_distance import triton as kernels
from sidkernels.ops.sample_distance.reference import pseudo_huber_c, sample_distance_ref
from tests.helpers import DTYPES, TOL, assert_close, randn

KINDS = ["l2", "l1", "pseudo_huber"]
SHAPES = [(1, 1), (3, 17), (2, 3, 5, 7), (2, 3, 37, 37)]  # last: more than one 4096 block per sample


def _distance_and_grads(backend, a, b, kind, reduction="none", **kw):
    leaves = [a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)]
    dist = sk.sample_distance(*leaves, kind, reduction=reduction, backend=backend, **kw)
    return dist, torch.autograd.grad(dist.sum(), leaves)


def _check(a, b, kind, reduction="none", backend="triton", **kw):
    """The kernels of ``backend`` against the fp64 reference: distance, gradient dtypes and values."""
    dist, grads = _distance_and_grads(backend, a, b, kind, reduction, **kw)
    ref, ref_grads = _distance_and_grads("torch", a.double(), b.double(), kind, reduction, **kw)
    coarsest = max(TOL[a.dtype], TOL[b.dtype])
    assert dist.dtype == torch.float32
    assert_close(dist, ref, tol=max(coarsest / 4, TOL[torch.float32]))
    for g, g_ref, t in zip(grads, ref_grads, (a, b)):
        assert g.dtype == t.dtype
        assert_close(g, g_ref, tol=max(TOL[g.dtype], coarsest / 4))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_fp32(kind, shape, device):
    _check(randn(shape, device=device), randn(shape, device=device), kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dtypes_and_reductions(kind, dtype, reduction, device):
    shape = (3, 3, 6, 5)
    _check(randn(shape, dtype, device), randn(shape, dtype, device), kind, reduction=reduction)


@pytest.mark.parametrize("kind", KINDS)
def test_mixed_dtypes(kind, device):
    """A bf16 network output against fp32 data (SIGN's L_rec under autocast)."""
    shape = (4, 3, 8, 8)
    _check(randn(shape, torch.bfloat16, device), randn(shape, torch.float32, device), kind)


@pytest.mark.parametrize("layout", ["strided", "channels_last"])
@pytest.mark.parametrize("kind", KINDS)
def test_layouts(layout, kind, device):
    shape = (3, 3, 7, 6)
    _check(randn(shape, device=device, layout=layout), randn(shape, device=device, layout=layout), kind)


def test_pseudo_huber_constant(device):
    """iCT's c = 0.00054 sqrt(D) by default; an explicit c is used as given."""
    a, b = randn((2, 3, 4, 4), device=device), randn((2, 3, 4, 4), device=device)
    assert pseudo_huber_c(48) == pytest.approx(0.00054 * math.sqrt(48))
    for c in (None, 0.5):
        expected = sample_distance_ref(a.double(), b.double(), "pseudo_huber", c)
        assert_close(sk.sample_distance(a, b, "pseudo_huber", c=c, backend="triton"), expected)


def test_pseudo_huber_small_residual_has_no_cancellation(device):
    """d = S / (sqrt(S + c^2) + c): for S << c^2 the kernel keeps full relative precision (~S / 2c)."""
    a = torch.zeros(2, 3, 32, 32, device=device)
    b = a + 1e-6
    c = pseudo_huber_c(a[0].numel())
    dist = sk.sample_distance(a, b, "pseudo_huber", backend="triton")
    expected = sample_distance_ref(a.double(), b.double(), "pseudo_huber")
    assert_close(dist, expected, tol=1e-6)
    assert dist[0].item() == pytest.approx(3072e-12 / (2 * c), rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 3, 37, 37)])
def test_nan_propagates_as_in_pytorch(kind, shape, device):
    """No drop: the NaN sample's distance is NaN and the gradients' NaN pattern is autograd's."""
    a, b = randn(shape, device=device), randn(shape, device=device)
    a[1, 0, 0, 0] = float("nan")
    dist, grads = _distance_and_grads("triton", a, b, kind)
    ref, ref_grads = _distance_and_grads("torch", a.double(), b.double(), kind)
    assert dist[1].isnan() and not dist[[0, 2]].isnan().any()
    assert_close(dist, ref.float())
    for g, g_ref in zip(grads, ref_grads):
        assert_close(g, g_ref.float())


def test_only_needed_gradients(device):
    a, b = randn((2, 3, 4, 4), device=device), randn((2, 3, 4, 4), device=device)
    dist, scale = KERNEL.variant("triton")(a, b, 0, 0.0)
    go = torch.ones((), device=device).expand(2)  # the stride-0 gradient of a sum
    g_a, g_b = BACKWARD.variant("triton")(go, scale, a, b, 0, torch.bfloat16, None)
    assert g_a.dtype == torch.bfloat16 and g_b.numel() == 0
    assert_close(g_a.double(), (2 / 48) * (a - b).double(), tol=TOL[torch.bfloat16])
    assert_close(scale, torch.full((2,), 2 / 48, device=device))
    a_leaf = a.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(sk.sample_distance(a_leaf, b, "l1", backend="triton").sum(), [a_leaf])
    assert_close(g, (a - b).sign() / 48)


def test_errors(device):
    a = randn((2, 3, 4, 4), device=device)
    with pytest.raises(ValueError, match="kind must be one of"):
        sk.sample_distance(a, a, "lpips")
    with pytest.raises(ValueError, match="b must have the shape of a"):
        sk.sample_distance(a, a[:, :2])
    with pytest.raises(ValueError, match="c must be > 0"):
        sk.sample_distance(a, a, "pseudo_huber", c=0.0)
    with pytest.raises(ValueError, match="takes none"):
        sk.sample_distance(a, a, "l2", c=0.1)
    with pytest.raises(TypeError, match="b must have a floating dtype"):
        sk.sample_distance(a, a.long())
    with pytest.raises(ValueError, match="reduction must be one of"):
        sk.sample_distance(a, a, reduction="max")


def test_reference_hand_computed_values():
    a = torch.tensor([[3.0, 0.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    b = torch.zeros(2, 4)
    torch.testing.assert_close(sample_distance_ref(a, b, "l2"), torch.tensor([25 / 4, 1.0]))
    torch.testing.assert_close(sample_distance_ref(a, b, "l1"), torch.tensor([7 / 4, 1.0]))
    c = pseudo_huber_c(4)
    assert c == pytest.approx(0.00108)
    expected = torch.tensor([math.sqrt(25 + c * c) - c, math.sqrt(4 + c * c) - c])
    torch.testing.assert_close(sample_distance_ref(a, b, "pseudo_huber"), expected)
    torch.testing.assert_close(sample_distance_ref(a, b, "pseudo_huber", c=1.0),
                               torch.tensor([math.sqrt(26) - 1, math.sqrt(5) - 1]))


def test_reference_dtypes_and_errors():
    a = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    assert sample_distance_ref(a, a.double(), "l1").dtype == torch.float64
    assert sample_distance_ref(a, a, "l2").dtype == torch.float32
    with pytest.raises(ValueError, match="kind must be one of"):
        sample_distance_ref(a, a, "lpips")


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_split_reduction_matches_a_single_block(kind, device):
    """Forward: the split reduction equals one block up to summation order, and is deterministic; backward:
    elementwise, so bitwise the same for every block size."""
    a, b = torch.randn(3, 3000, device=device), torch.randn(3, 3000, device=device)
    go = torch.rand(3, device=device)

    def launch(blk):
        dist, scale = torch.empty(3, device=device), torch.empty(3, device=device)
        run(kernels.forward_launches(a, b, dist, scale, kind, 0.03, block=blk), a.device)
        ga, gb = torch.empty_like(a), torch.empty_like(b, dtype=torch.bfloat16)
        run(kernels.backward_launches(go, scale, a, b, ga, gb, kind, block=blk), a.device)
        return dist, scale, ga, gb

    split, again, whole = launch(256), launch(256), launch(4096)
    assert all(torch.equal(s, t) for s, t in zip(split, again))
    for s, w in zip(split[:2], whole[:2]):
        torch.testing.assert_close(s, w, rtol=1e-5, atol=1e-6)
    ga_ref = go[:, None] * split[1][:, None] * ((a - b).sign() if kind == 1 else a - b)
    torch.testing.assert_close(split[2], ga_ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(split[3].float(), -split[2], rtol=2 ** -7, atol=0)  # one bf16 rounding
