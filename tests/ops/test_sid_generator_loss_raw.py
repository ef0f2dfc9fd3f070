"""The SiD generator loss from raw outputs (Triton) against two independent formulations: the reference (the
EDM output combination, then the SiD loss, with autograd for the gradients) and the closed-form gradients."""
import pytest
import torch

import sidkernels as sk
from sidkernels._triton import run
from sidkernels.ops._precond import coefficients
from sidkernels.ops.sid_generator_loss_raw import BACKWARD, KERNEL
from sidkernels.ops.sid_generator_loss_raw import triton as kernels
from tests.helpers import DTYPES, TOL, assert_close, randn

SHAPES = [(1, 1, 1, 1), (3, 1, 1, 17), (2, 3, 5, 7), (2, 3, 37, 37)]  # last: > one 4096 block


def _sigma(n, device):
    return sk.sample_sigma_sid(n, device=device)


def _loss_and_grads(backend, inputs, sigma, reduction="mean", **kw):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    loss = sk.sid_generator_loss_raw(*leaves, sigma, reduction=reduction, backend=backend, **kw)
    return loss, torch.autograd.grad(loss.sum(), leaves)


def _check(inputs, sigma, reduction="mean", backend="triton", **kw):
    loss, grads = _loss_and_grads(backend, inputs, sigma, reduction, **kw)
    ref_loss, ref_grads = _loss_and_grads("torch", [t.double() for t in inputs], sigma.double(), reduction, **kw)
    coarsest = max(TOL[t.dtype] for t in inputs)
    assert loss.dtype == torch.float32
    assert_close(loss, ref_loss, tol=max(coarsest / 4, TOL[torch.float32]))
    for g, g_ref, t in zip(grads, ref_grads, inputs):
        assert g.dtype == t.dtype and g.shape == t.shape
        assert_close(g, g_ref, tol=max(TOL[g.dtype], coarsest / 4))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("precond", ["edm", "vp", "ve"])
def test_matches_reference(shape, precond, device):
    _check([randn(shape, device=device) for _ in range(4)], _sigma(shape[0], device), precond=precond, alpha=1.2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dtypes_and_reductions(dtype, reduction, device):
    _check([randn((3, 3, 6, 5), dtype, device) for _ in range(4)], _sigma(3, device), reduction=reduction)


def test_bf16_raw_outputs_fp32_samples(device):
    """The trainer's case under autocast: F_phi, F_psi in bf16, x_t and x_g in fp32, one kernel, fp32 math."""
    shape = (3, 3, 8, 8)
    _check([randn(shape, torch.bfloat16, device), randn(shape, torch.bfloat16, device), randn(shape, device=device),
            randn(shape, device=device)], _sigma(3, device), alpha=1.0, loss_scale=100.0)


@pytest.mark.parametrize("layout", ["strided", "channels_last"])
def test_layouts(layout, device):
    _check([randn((3, 3, 7, 6), device=device, layout=layout) for _ in range(4)], _sigma(3, device))


def test_equals_the_loss_on_denoiser_outputs(device):
    """The same loss and gradients as edm_precond_out on both raw outputs followed by sid_generator_loss."""
    fp, fq, xt, xg = (randn((4, 3, 9, 9), device=device, requires_grad=True) for _ in range(4))
    sigma = _sigma(4, device)
    raw = sk.sid_generator_loss_raw(fp, fq, xt, xg, sigma, alpha=1.2, reduction="sum", backend="triton")
    a = sk.edm_precond_out(xt, fp, sigma, backend="triton")
    b = sk.edm_precond_out(xt, fq, sigma, backend="triton")
    chain = sk.sid_generator_loss(a, b, xg, alpha=1.2, reduction="sum", backend="triton")
    assert_close(raw, chain)
    for g_raw, g_chain in zip(torch.autograd.grad(raw, [fp, fq, xt, xg]), torch.autograd.grad(chain, [fp, fq, xt, xg])):
        assert_close(g_raw, g_chain, tol=1e-4)  # the chain's x_t gradient is a sum of two nearly cancelling terms


def test_closed_form_gradients(device):
    """dl/dF_phi = c_out [(a - x_g) + (1 - 2 alpha)(a - b)] / w, dl/dF_psi = c_out [2 alpha (a - b) - (a - x_g)] / w,
    dl/dx_t = c_skip (a - b) / w, dl/dx_g = -(a - b) / w (w held fixed)."""
    alpha = 1.25
    fp, fq, xt, xg = (randn((3, 2, 4, 5), device=device, requires_grad=True) for _ in range(4))
    sigma = _sigma(3, device)
    loss = sk.sid_generator_loss_raw(fp, fq, xt, xg, sigma, alpha=alpha, reduction="sum", backend="triton")
    grads = torch.autograd.grad(loss, [fp, fq, xt, xg])
    c_skip, c_out, _, _ = (c.view(-1, 1, 1, 1) for c in coefficients(sigma.double()))
    fp, fq, xt, xg = (t.detach().double() for t in (fp, fq, xt, xg))
    a, b = c_skip * xt + c_out * fp, c_skip * xt + c_out * fq
    w = (xg - a).abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = (c_out * ((a - xg) + (1 - 2 * alpha) * (a - b)) / w, c_out * (2 * alpha * (a - b) - (a - xg)) / w,
                c_skip * (a - b) / w, -(a - b) / w)
    for g, e in zip(grads, expected):
        assert_close(g, e.float())


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 3, 37, 37)])
def test_nan_rows_are_dropped(shape, device):
    inputs = [randn(shape, device=device) for _ in range(4)]
    inputs[0][1, 0, 0, 0] = float("nan")
    inputs[2][2, -1, -1, -1] = float("nan")
    sigma = _sigma(shape[0], device)
    loss, grads = _loss_and_grads("triton", inputs, sigma, reduction="none")
    assert loss[1] == 0 and loss[2] == 0
    for g in grads:
        assert torch.isfinite(g).all() and (g[1:3] == 0).all()
    clean = [0] + list(range(3, shape[0]))
    ref_loss, ref_grads = _loss_and_grads("torch", [t.double() for t in inputs], sigma.double(), reduction="none")
    assert_close(loss[clean], ref_loss[clean].float())
    for g, g_ref in zip(grads, ref_grads):
        assert_close(g[clean], g_ref[clean].float())


def test_only_needed_gradients(device):
    """Gradients are written only for inputs that require them; the backward kernel op leaves the rest empty."""
    fp, fq, xt, xg = (randn((2, 3, 4, 4), device=device) for _ in range(4))
    sigma = _sigma(2, device)
    loss, scale = KERNEL.variant("triton")(fp, fq, xt, xg, sigma, 0, 0.5, 1.2, 1e-5, True)
    g = BACKWARD.variant("triton")(torch.ones((), device=device).expand(2), scale, fp, fq, xt, xg, sigma, 0, 0.5, 1.2,
                                   None, torch.bfloat16, None, None)
    assert g[0].numel() == g[2].numel() == g[3].numel() == 0 and g[1].dtype == torch.bfloat16
    fq.requires_grad_(True)
    (g_fq,) = torch.autograd.grad(sk.sid_generator_loss_raw(fp, fq, xt, xg, sigma, reduction="sum", backend="triton"),
                                  [fq])
    assert_close(g[1].double(), g_fq.double(), tol=TOL[torch.bfloat16])


@pytest.mark.parametrize("block", [256, 1024])
def test_split_reduction_matches_a_single_block(block, device):
    fp, fq, xt, xg = (torch.randn(3, 3000, device=device) for _ in range(4))
    sigma = torch.rand(3, device=device) + 0.1

    def launch(blk):
        loss, scale = torch.empty(3, device=device), torch.empty(3, device=device)
        run(kernels.forward_launches(fp, fq, xt, xg, sigma, loss, scale, 0, 0.5, 1.2, 1e-5, True, block=blk),
            xg.device)
        return loss, scale

    for split, whole in zip(launch(block), launch(4096)):
        torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)


def test_errors(device):
    x = randn((2, 3, 4, 4), device=device)
    with pytest.raises(ValueError, match="x_t must have the shape of x_g"):
        sk.sid_generator_loss_raw(x, x, x[:, :2], x, 0.5)
    with pytest.raises(ValueError, match="precond must be one of"):
        sk.sid_generator_loss_raw(x, x, x, x, 0.5, precond="iddpm")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        sk.sid_generator_loss_raw(x, x, x, x, torch.tensor([0.5, -1.0], device=device))
    with pytest.raises(TypeError, match="fake_raw must have a floating dtype"):
        sk.sid_generator_loss_raw(x, x.long(), x, x, 0.5)
