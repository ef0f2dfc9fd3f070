"""The kernel backends on a GPU: every op of backend "cuda" (CUDA C++) and "triton" against backend "torch"
(the fp64 reference), cuda against triton, the noise stream against the numpy Philox oracle, and one
compute-sanitizer memcheck run of every CUDA kernel.  Shapes, dtypes, NaN rows and layouts are those of
tests/ops (whose helpers are reused); the multi-chunk shapes run the two-stage reductions.  The CUDA kernels,
Triton and the oracle agree to a few ulps, not bitwise (approximate division, square root and transcendental
functions and FMA contraction differ between the compilers).

On a CPU machine the same suite runs against the host emulation of the CUDA kernels (tests/cuda_ext/
host_emulation, built and run by test_host_emulation.py with the library's path in
$SIDKERNELS_CUDA_HOST_EMULATION): the tensors are CPU tensors, Triton is interpreted, and ASan/UBSan stand in
for compute-sanitizer.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sidkernels as sk
from sidkernels import cuda_ext
from sidkernels.ops import kernel_ops
from sidkernels.ops.add_noise.reference import add_noise_ref, philox_noise_like
from tests.cuda_ext.host_emulation.build import LIBRARY_ENV
from tests.helpers import DTYPES, TOL, assert_close, randn
from tests.ops import test_fake_score_loss as fake_tests
from tests.ops import test_sample_distance as distance_tests
from tests.ops import test_sid_generator_loss as sid_tests
from tests.ops import test_sid_generator_loss_raw as raw_tests
from tests.ops.test_registry import _kernel_cases

HOST_EMULATION = os.environ.get(LIBRARY_ENV)
DEVICE = "cpu" if HOST_EMULATION else "cuda"

pytestmark = pytest.mark.skipif(not HOST_EMULATION and not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: the CUDA C++ kernels only run there "
                                       "(CPU CI compiles them in test_build.py and runs this suite on their host "
                                       "emulation in test_host_emulation.py)")
gpu_only = pytest.mark.skipif(bool(HOST_EMULATION), reason="needs a real GPU (streams, compute-sanitizer)")
KERNELS = kernel_ops()

BACKENDS = ["triton", "cuda"]
KINDS = ["edm", "vp", "ve"]
SHAPES = [(1, 1), (3, 17), (2, 3, 5, 7), (2, 3, 37, 37), (2, 3, 128, 129)]  # last: several blocks per sample
LONG = (2, 3, 256, 256)  # many chunks per sample: the loss finalize kernel runs


@pytest.fixture(scope="module", autouse=True)
def _cuda_backend():
    """Build (just in time, cached) and load the extension once; a failure here is an error, not a skip."""
    if HOST_EMULATION:
        cuda_ext.load_library(HOST_EMULATION, device_type="cpu")
    else:
        cuda_ext.require()


def _misaligned(shape, dtype=torch.float32, requires_grad=False):
    """A contiguous tensor whose data pointer is not 16-byte aligned (the kernels' scalar path); with
    requires_grad it is a view of a leaf, so autograd.grad can differentiate with respect to it in place."""
    base = torch.randn(shape[0] + 1, *shape[1:], device=DEVICE).to(dtype).requires_grad_(requires_grad)
    t = base[1:]
    assert t.is_contiguous() and t.data_ptr() % 16 != 0
    return t


# ------------------------------------------------------------------ noise
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("precond", KINDS)
def test_noise_matches_reference_given_eps(backend, shape, precond):
    x, sigma = randn(shape, device=DEVICE), sk.sample_sigma_sid(shape[0], device=DEVICE)
    xt, net, eps = sk.add_noise(x, sigma, precond=precond, sigma_data=0.6, return_net_input=True, return_eps=True,
                                backend=backend)
    ref_xt, ref_net = add_noise_ref(x, sigma, eps, precond=precond, sigma_data=0.6)
    assert_close(xt, ref_xt)
    assert_close(net, ref_net)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net_dtype", [torch.bfloat16, torch.float32])
def test_noise_dtypes(backend, dtype, net_dtype):
    x, sigma = randn((3, 3, 6, 5), dtype, DEVICE), sk.sample_sigma_sid(3, device=DEVICE)
    xt, net, eps = sk.add_noise(x, sigma, net_dtype=net_dtype, return_net_input=True, return_eps=True,
                                backend=backend)
    assert xt.dtype == dtype and net.dtype == net_dtype and eps.dtype == torch.float32
    ref_xt, ref_net = add_noise_ref(x.double(), sigma.double(), eps.double())
    assert_close(xt, ref_xt.to(dtype).double(), tol=TOL[dtype])
    assert_close(net, ref_net.to(net_dtype).double(), tol=max(TOL[dtype], TOL[net_dtype]))


@pytest.mark.parametrize("layout", ["strided", "channels_last"])
def test_noise_layouts(layout):
    x, sigma = randn((2, 3, 7, 6), device=DEVICE, layout=layout), sk.sample_sigma_sid(2, device=DEVICE)
    xt, eps = sk.add_noise(x, sigma, return_eps=True, backend="cuda")
    assert_close(xt, add_noise_ref(x, sigma, eps)[0])
    if layout == "channels_last":
        assert xt.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(3, 2, 40, 41), (5, 37), (4, 1, 1, 3), LONG])
def test_eps_is_the_triton_stream_and_the_oracle(shape):
    """The same (seed, sample, position) gives the same eps on both backends and in the numpy oracle, up to the
    ulps of the fp32 log/sin/cos/sqrt (a wrong counter, key, group or uniform mapping would differ by O(1))."""
    x = torch.zeros(shape, device=DEVICE)
    seed = (7 << 40) + 12345
    _, eps_cuda = sk.add_noise(x, 1.0, seed=seed, return_eps=True, backend="cuda")
    _, eps_triton = sk.add_noise(x, 1.0, seed=seed, return_eps=True, backend="triton")
    oracle = philox_noise_like(x, seed).to(DEVICE)
    assert_close(eps_cuda, oracle, tol=1e-6)
    assert_close(eps_cuda, eps_triton, tol=1e-6)


def test_eps_does_not_depend_on_the_vector_path():
    """Misaligned (scalar loads) and aligned (16-byte loads) copies of one input draw bit-identical noise."""
    x = _misaligned((3, 37))
    sigma = torch.rand(3, device=DEVICE) + 0.1
    a = sk.add_noise(x, sigma, seed=5, return_net_input=True, return_eps=True, backend="cuda")
    b = sk.add_noise(x.clone(), sigma, seed=5, return_net_input=True, return_eps=True, backend="cuda")
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_noise_seed_determinism():
    x, sigma = randn((2, 3, 8, 8), device=DEVICE), sk.sample_sigma_sid(2, device=DEVICE)
    a = sk.add_noise(x, sigma, seed=11, backend="cuda")
    assert torch.equal(a, sk.add_noise(x, sigma, seed=torch.tensor([11], device=DEVICE), backend="cuda"))
    assert (a != sk.add_noise(x, sigma, seed=12, backend="cuda")).float().mean() > 0.99


def test_eps_statistics():
    from scipy import stats
    _, eps = sk.add_noise(torch.zeros(4, 25_000, device=DEVICE), 1.0, return_eps=True, backend="cuda")
    e = eps.double().flatten()
    assert abs(e.mean().item()) < 0.02 and abs(e.std().item() - 1) < 0.02
    assert stats.kstest(e.cpu().numpy(), "norm").statistic < 0.01


def test_noise_backward():
    x = randn((2, 3, 8, 8), device=DEVICE, requires_grad=True)
    sigma = sk.sample_sigma_sid(2, device=DEVICE)
    xt, net = sk.add_noise(x, sigma, return_net_input=True, backend="cuda")
    g_xt, g_net = torch.randn_like(xt), torch.randn_like(net)
    (gx,) = torch.autograd.grad([xt, net], [x], [g_xt, g_net])
    c_in = (sigma ** 2 + 0.25).rsqrt().view(-1, 1, 1, 1)
    assert_close(gx, g_xt + c_in * g_net)


# ------------------------------------------------------------------ preconditioning
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_precond_in_and_out(backend, shape, kind):
    x = randn(shape, device=DEVICE, requires_grad=True)
    F = randn(shape, device=DEVICE, requires_grad=True)
    sigma = sk.sample_sigma_sid(shape[0], device=DEVICE)
    y, c_noise = sk.edm_precond_in(x, sigma, precond=kind, sigma_data=0.7, backend=backend)
    ref_y, ref_c = sk.edm_precond_in(x, sigma.double(), precond=kind, sigma_data=0.7, backend="torch")
    assert_close(y, ref_y)
    assert c_noise.dtype == torch.float32
    assert_close(c_noise, sk.ref.coefficients(sigma.double(), kind, 0.7)[3].float(), tol=1e-6)
    g = torch.randn_like(y)
    assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(ref_y, x, g)[0])
    D = sk.edm_precond_out(x, F, sigma, precond=kind, backend=backend)
    ref_D = sk.edm_precond_out(x, F, sigma.double(), precond=kind, backend="torch")
    assert D.dtype == torch.float32
    assert_close(D, ref_D)
    g = torch.randn_like(D)
    for ours, theirs in zip(torch.autograd.grad(D, [x, F], g), torch.autograd.grad(ref_D, [x, F], g)):
        assert_close(ours, theirs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("other", [torch.bfloat16, torch.float16, torch.float32])
def test_precond_dtypes(backend, dtype, other):
    """Input x in dtype with the network side (y, F) in `other`: outputs and gradients in their dtypes."""
    x = randn((3, 3, 6, 5), dtype, DEVICE, requires_grad=True)
    F = randn((3, 3, 6, 5), other, DEVICE, requires_grad=True)
    sigma = sk.sample_sigma_lognormal(3, device=DEVICE)
    y, _ = sk.edm_precond_in(x, sigma, dtype=other, backend=backend)
    assert y.dtype == other
    assert_close(y, sk.edm_precond_in(x.detach().double(), sigma, backend="torch")[0].to(other).double(),
                 tol=TOL[other])
    gx = torch.autograd.grad(y, x, torch.ones_like(y))[0]
    c_in = (sigma ** 2 + 0.25).rsqrt().view(-1, 1, 1, 1).double()
    assert gx.dtype == dtype
    assert_close(gx, c_in.expand_as(x).to(dtype).double(), tol=TOL[dtype])
    D = sk.edm_precond_out(x, F, sigma, backend=backend)
    assert_close(D, sk.edm_precond_out(x.double(), F.double(), sigma, backend="torch"),
                 tol=max(TOL[torch.float32], TOL[dtype] / 4, TOL[other] / 4))
    gx, gF = torch.autograd.grad(D, [x, F], torch.ones_like(D))
    assert gx.dtype == dtype and gF.dtype == other
    _, c_out, _, _ = sk.ref.coefficients(sigma.double())
    assert_close(gF, c_out.view(-1, 1, 1, 1).expand_as(F).to(other).double(), tol=TOL[other])


@pytest.mark.parametrize("layout", ["strided", "channels_last", "misaligned"])
def test_precond_layouts(layout):
    shape = (2, 3, 7, 6)
    if layout == "misaligned":
        x, F = _misaligned(shape), _misaligned(shape)
    else:
        x, F = randn(shape, device=DEVICE, layout=layout), randn(shape, device=DEVICE, layout=layout)
    sigma = sk.sample_sigma_lognormal(2, device=DEVICE)
    assert_close(sk.edm_precond_out(x, F, sigma, backend="cuda"), sk.edm_precond_out(x, F, sigma, backend="torch"))
    y, _ = sk.edm_precond_in(x, sigma, backend="cuda")
    assert_close(y, sk.edm_precond_in(x, sigma, backend="torch")[0])
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_precond_in_bwd_with_addend_and_scalar_sigma():
    """The noise op's backward form (c_in gy + addend) and a 0-dim sigma broadcast to every sample."""
    gy, addend = randn((3, 3, 9, 9), torch.bfloat16, DEVICE), randn((3, 3, 9, 9), device=DEVICE)
    sigma = torch.tensor(0.8, device=DEVICE).expand(3)  # stride 0
    out = KERNELS["edm_precond_in_bwd"].variant("cuda")(gy, sigma, addend, 0, 0.5, torch.float32)
    c_in = (0.8 ** 2 + 0.25) ** -0.5
    assert_close(out, c_in * gy.double() + addend.double())


# ------------------------------------------------------------------ SiD generator loss
def _check_sid(backend, inputs, reduction="mean", **kw):
    return sid_tests._check(inputs, reduction, backend=backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", sid_tests.SHAPES + [LONG])
@pytest.mark.parametrize("alpha", [1.0, 1.2])
def test_sid_loss_matches_reference(backend, shape, alpha):
    _check_sid(backend, [randn(shape, device=DEVICE) for _ in range(3)], alpha=alpha)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_sid_loss_dtypes_and_reductions(backend, dtype, reduction):
    _check_sid(backend, [randn((3, 3, 6, 5), dtype, DEVICE) for _ in range(3)], reduction=reduction)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sid_loss_mixed_dtypes_layouts_and_options(backend):
    shape = (3, 2, 9, 9)
    _check_sid(backend, [randn(shape, torch.bfloat16, DEVICE), randn(shape, torch.float32, DEVICE),
                         randn(shape, torch.float16, DEVICE)])
    _check_sid(backend, [randn(shape, device=DEVICE, layout="channels_last"), randn(shape, device=DEVICE),
                         randn(shape, device=DEVICE, layout="strided")])
    _check_sid(backend, [randn(shape, device=DEVICE) for _ in range(3)], loss_scale=100.0, normalize=False,
               weight_clip=1e-3)
    _check_sid(backend, [randn(shape, device=DEVICE) for _ in range(3)], weight_clip=10.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 3, 37, 37), (3, 3, 256, 256)])
def test_sid_loss_nan_rows_are_dropped(backend, shape):
    a, b, x = (randn(shape, device=DEVICE) for _ in range(3))
    a[1, 0, 0, 0] = float("nan")
    x[2, -1, -1, -1] = float("nan")
    loss, grads = sid_tests._loss_and_grads(backend, [a, b, x], reduction="none")
    assert loss[1] == 0 and loss[2] == 0
    for g in grads:
        assert torch.isfinite(g).all() and (g[1:3] == 0).all()
    clean = [0] + list(range(3, shape[0]))
    ref_loss, ref_grads = sid_tests._loss_and_grads("torch", [t.double() for t in (a, b, x)], reduction="none")
    assert_close(loss[clean], ref_loss[clean].float(), tol=TOL[torch.float32])
    for g, g_ref in zip(grads, ref_grads):
        assert_close(g[clean], g_ref[clean].float(), tol=TOL[torch.float32])


def test_sid_loss_only_needed_gradients_and_determinism():
    a, b, x = (randn(LONG, torch.bfloat16, DEVICE) for _ in range(3))
    op = KERNELS["sid_generator_loss"].variant("cuda")
    loss, scale, ga, gb, gx = op(a, b, x, 1.2, 1e-5, True, False, False, True)
    assert ga.numel() == 0 and gb.numel() == 0 and gx.shape == x.shape
    again = op(a, b, x, 1.2, 1e-5, True, False, False, True)
    assert torch.equal(loss, again[0]) and torch.equal(scale, again[1])  # fixed-order two-stage reduction
    triton = KERNELS["sid_generator_loss"].variant("triton")(a, b, x, 1.2, 1e-5, True, False, False, True)
    assert_close(loss, triton[0], tol=TOL[torch.float32])
    assert_close(gx, triton[4], tol=TOL[torch.bfloat16])


# ------------------------------------------------------------------ fake-score loss
def _check_fake(backend, den, y, sigma, reduction="mean", **kw):
    fake_tests._check(den, y, sigma, reduction, backend=backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", fake_tests.SHAPES + [LONG])
def test_fake_score_loss_matches_reference(backend, shape):
    _check_fake(backend, randn(shape, device=DEVICE), randn(shape, device=DEVICE),
                sk.sample_sigma_lognormal(shape[0], device=DEVICE))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_fake_score_loss_dtypes_and_reductions(backend, dtype, reduction):
    shape = (3, 3, 6, 5)
    _check_fake(backend, randn(shape, dtype, DEVICE), randn(shape, dtype, DEVICE),
                sk.sample_sigma_lognormal(3, device=DEVICE), reduction=reduction)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["strided", "channels_last", "mixed_dtypes"])
def test_fake_score_loss_layouts(backend, layout):
    shape = (3, 3, 7, 6)
    sigma = sk.sample_sigma_lognormal(3, device=DEVICE)
    if layout == "mixed_dtypes":
        den, y = randn(shape, torch.float32, DEVICE), randn(shape, torch.bfloat16, DEVICE)
    else:
        den, y = randn(shape, device=DEVICE, layout=layout), randn(shape, device=DEVICE, layout=layout)
    _check_fake(backend, den, y, sigma, sigma_data=0.7, loss_scale=3.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 3, 256, 256)])
def test_fake_score_loss_nan_rows_are_dropped(backend, shape):
    den, y = randn(shape, device=DEVICE), randn(shape, device=DEVICE)
    den[1, 0, 0, 0] = float("nan")
    y[2, -1, -1, -1] = float("nan")
    sigma = sk.sample_sigma_lognormal(shape[0], device=DEVICE)
    loss, grads = fake_tests._loss_and_grads(backend, den, y, sigma, reduction="none")
    assert loss[1] == 0 and loss[2] == 0
    for g in grads:
        assert torch.isfinite(g).all() and (g[1:3] == 0).all()
    keep = [0] + list(range(3, shape[0]))
    ref_loss, _ = fake_tests._loss_and_grads("torch", den.double(), y.double(), sigma.double(), reduction="none")
    assert_close(loss[keep], ref_loss[keep].float())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 2, 9, 9), (2, 3, 255, 257)])
def test_losses_on_misaligned_inputs(backend, shape):
    """Inputs at addresses that are not 16-byte aligned (the scalar path; one and many chunks per sample)."""
    a, b, x = (_misaligned(shape, requires_grad=True) for _ in range(3))
    loss = sk.sid_generator_loss(a, b, x, backend=backend)
    ref_loss, ref_grads = sid_tests._loss_and_grads("torch", [t.detach().double() for t in (a, b, x)])
    assert_close(loss, ref_loss)
    for g, g_ref in zip(torch.autograd.grad(loss, [a, b, x]), ref_grads):
        assert_close(g, g_ref)
    sigma = sk.sample_sigma_lognormal(shape[0], device=DEVICE)
    loss = sk.fake_score_loss(a, x, sigma, backend=backend)
    ref_loss, ref_grads = fake_tests._loss_and_grads("torch", a.detach().double(), x.detach().double(),
                                                     sigma.double())
    assert_close(loss, ref_loss)
    for g, g_ref in zip(torch.autograd.grad(loss, [a, x]), ref_grads):
        assert_close(g, g_ref)


# ------------------------------------------------------------------ distances
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", distance_tests.KINDS)
@pytest.mark.parametrize("shape", distance_tests.SHAPES + [LONG])
def test_distance_matches_reference(backend, kind, shape):
    distance_tests._check(randn(shape, device=DEVICE), randn(shape, device=DEVICE), kind, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", distance_tests.KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_distance_dtypes_and_reductions(backend, kind, dtype):
    shape = (3, 3, 6, 5)
    for reduction in ("none", "mean"):
        distance_tests._check(randn(shape, dtype, DEVICE), randn(shape, dtype, DEVICE), kind, reduction, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["strided", "channels_last", "mixed_dtypes", "misaligned"])
def test_distance_layouts(backend, layout):
    shape = (3, 3, 7, 6)
    if layout == "mixed_dtypes":
        a, b = randn(shape, torch.bfloat16, DEVICE), randn(shape, torch.float32, DEVICE)
    elif layout == "misaligned":
        a, b = _misaligned(shape), _misaligned(shape)
    else:
        a, b = randn(shape, device=DEVICE, layout=layout), randn(shape, device=DEVICE, layout=layout)
    for kind in distance_tests.KINDS:
        distance_tests._check(a, b, kind, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 3, 256, 256)])
def test_distance_nan_propagates(backend, shape):
    a, b = randn(shape, device=DEVICE), randn(shape, device=DEVICE)
    a[1, 0, 0, 0] = float("nan")
    for kind in distance_tests.KINDS:
        dist, grads = distance_tests._distance_and_grads(backend, a, b, kind)
        ref, ref_grads = distance_tests._distance_and_grads("torch", a.double(), b.double(), kind)
        assert_close(dist, ref.float())
        for g, g_ref in zip(grads, ref_grads):
            assert_close(g, g_ref.float())


# ------------------------------------------------------------------ SiD generator loss from raw outputs
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", raw_tests.SHAPES + [LONG])
@pytest.mark.parametrize("precond", KINDS)
def test_raw_generator_loss_matches_reference(backend, shape, precond):
    raw_tests._check([randn(shape, device=DEVICE) for _ in range(4)], sk.sample_sigma_sid(shape[0], device=DEVICE),
                     backend=backend, precond=precond)


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_generator_loss_dtypes_layouts_and_nan_rows(backend):
    shape = (3, 3, 9, 9)
    sigma = sk.sample_sigma_sid(3, device=DEVICE)
    raw_tests._check([randn(shape, torch.bfloat16, DEVICE), randn(shape, torch.float16, DEVICE),
                      randn(shape, device=DEVICE, layout="channels_last"), randn(shape, device=DEVICE)], sigma,
                     backend=backend)
    inputs = [randn(LONG, device=DEVICE) for _ in range(4)]
    inputs[1][1, 0, 0, 0] = float("nan")
    loss, grads = raw_tests._loss_and_grads(backend, inputs, sk.sample_sigma_sid(2, device=DEVICE), reduction="none")
    assert loss[1] == 0 and all((g[1] == 0).all() and torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------ op-level checks
CASES = list(_kernel_cases("cpu"))


@pytest.mark.parametrize("case", CASES)
def test_opcheck(case):
    """Schema, fake and autograd registration of the cuda variant, with real CUDA kernels."""
    kernel, args = _kernel_cases(torch.device(DEVICE))[case]
    torch.library.opcheck(kernel.variant("cuda"), args)


@pytest.mark.parametrize("case", CASES)
def test_cuda_variant_matches_triton_variant(case):
    kernel, args = _kernel_cases(torch.device(DEVICE))[case]
    if kernel.name == "add_noise":
        pytest.skip("eps differs by transcendental ulps: test_eps_is_the_triton_stream_and_the_oracle")
    with torch.no_grad():
        ours, theirs = kernel.variant("cuda")(*args), kernel.variant("triton")(*args)
    for a, b in zip(ours if isinstance(ours, tuple) else (ours,), theirs if isinstance(theirs, tuple) else (theirs,)):
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
        if a.numel():
            assert_close(a, b, tol=TOL[a.dtype])


@gpu_only
def test_runs_on_the_current_stream():
    """The ops are enqueued on torch's current stream (not the default one): work queued before them on a
    side stream is finished when they read their input."""
    x = torch.zeros(4, 1 << 20, device=DEVICE)
    src = torch.randn_like(x)
    sigma = torch.full((4,), 2.0, device=DEVICE)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # ~tens of ms of GPU time before the copy lands
        x.copy_(src)
        y, _ = KERNELS["edm_precond_in"].variant("cuda")(x, sigma, 0, 0.5, torch.float32)
    side.synchronize()
    assert_close(y, src * (4.0 + 0.25) ** -0.5)


def test_under_torch_compile():
    def step(x_g, a, b, sigma):
        x_t, net = sk.add_noise(x_g, sigma, seed=3, return_net_input=True, backend="cuda")
        return sk.sid_generator_loss(a * net, b, x_t, loss_scale=100.0, backend="cuda")

    x_g = randn((2, 3, 8, 8), device=DEVICE, requires_grad=True)
    a, b = randn((2, 3, 8, 8), device=DEVICE), randn((2, 3, 8, 8), device=DEVICE)
    sigma = sk.sample_sigma_sid(2, device=DEVICE)
    eager = step(x_g, a, b, sigma)
    compiled = torch.compile(step, fullgraph=True)(x_g, a, b, sigma)
    assert_close(compiled, eager)
    assert_close(torch.autograd.grad(compiled, x_g)[0], torch.autograd.grad(eager, x_g)[0])


def test_clear_errors():
    x = torch.randn(2, 3, 4, 4, device=DEVICE)
    out, inp, noise = (KERNELS[name].variant("cuda") for name in ("edm_precond_out", "edm_precond_in", "add_noise"))
    with pytest.raises(RuntimeError, match="edm_precond_out_cuda: x is Double; the CUDA kernels take Float, Half or"):
        out(x.double(), x, torch.ones(2, device=DEVICE), 0, 0.5)
    with pytest.raises(RuntimeError, match="tensor inputs must share one contiguous or channels_last layout"):
        out(x, x.contiguous(memory_format=torch.channels_last), torch.ones(2, device=DEVICE), 0, 0.5)
    with pytest.raises(RuntimeError, match=r"sigma must have shape \[2\]"):
        inp(x, torch.ones(3, device=DEVICE), 0, 0.5, torch.float32)
    with pytest.raises(RuntimeError, match="seed must be an int64 tensor"):
        noise(x, torch.ones(2, device=DEVICE), torch.ones(1, device=DEVICE), 0, 0.5, None, False)
    with pytest.raises(RuntimeError, match="kind must be one of 0 .edm., 1 .vp., 2 .ve., got 3"):
        inp(x, torch.ones(2, device=DEVICE), 3, 0.5, torch.float32)


# ------------------------------------------------------------------ compute-sanitizer
@gpu_only
def test_memcheck_every_kernel():
    """One call of every CUDA kernel (vector and scalar paths, one and many chunks per sample) under
    compute-sanitizer memcheck, with torch's caching allocator off so every buffer has its exact size."""
    home = cuda_ext.find_cuda_home()
    tool = shutil.which("compute-sanitizer") or (str(home / "bin" / "compute-sanitizer") if home else None)
    if tool is None or not Path(tool).exists():
        pytest.skip("compute-sanitizer is not installed")
    env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1")
    proc = subprocess.run([tool, "--tool", "memcheck", "--error-exitcode", "99", "--leak-check", "no",
                           sys.executable, "-m", "tests.cuda_ext.memcheck_ops"], cwd=Path(__file__).resolve().parents[2],
                          env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "ERROR SUMMARY: 0 errors" in log and "all kernels ran" in log


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_kernel_op_has_a_cuda_kernel(name):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(KERNELS[name].qualname("cuda"),
                                                           "CPU" if HOST_EMULATION else "CUDA")


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 8, 1)])
def test_size_one_dimensions_in_both_layouts(shape):
    """A one-channel channels_last tensor beside a contiguous one shares its layout (strides differ only on the
    size-1 dimension): the binding takes them as they are."""
    from sidkernels.ops import OPS
    for op in OPS.values():
        inputs = list(op.example(shape, torch.float32, DEVICE))
        big = [i for i, t in enumerate(inputs) if t.shape == shape]
        for i in big[1::2]:
            inputs[i] = inputs[i].detach().contiguous(memory_format=torch.channels_last)
        if op.name == "add_noise":
            xt, eps = sk.add_noise(*inputs, return_eps=True, backend="cuda")
            assert_close(xt, add_noise_ref(*inputs, eps)[0])
            continue
        for out, expected in zip(op.call(inputs, "cuda"), op.call(inputs, "torch")):
            assert_close(out, expected)
