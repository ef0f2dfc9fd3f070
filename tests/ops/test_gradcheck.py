"""fp64 gradcheck of every custom backward on tiny shapes (kernels accumulate in fp64 for fp64 inputs)."""
import torch
from torch.autograd import gradcheck

import sidkernels as sk


def _leaf(*shape, device):
    return torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)


def test_add_noise(device):
    x = _leaf(2, 3, 4, device=device)
    sigma = torch.tensor([0.3, 2.0], dtype=torch.float64, device=device)
    fn = lambda x: sk.add_noise(x, sigma, seed=3, return_net_input=True, backend="triton")
    assert gradcheck(fn, (x,))


def test_precond_in(device):
    sigma = torch.tensor([0.3, 2.0], dtype=torch.float64, device=device)
    for kind in ("edm", "vp", "ve"):
        assert gradcheck(lambda x: sk.edm_precond_in(x, sigma, precond=kind, backend="triton")[0],
                         (_leaf(2, 3, 4, device=device),))


def test_precond_out(device):
    sigma = torch.tensor([0.3, 2.0], dtype=torch.float64, device=device)
    for kind in ("edm", "vp", "ve"):
        assert gradcheck(lambda x, F: sk.edm_precond_out(x, F, sigma, precond=kind, backend="triton"),
                         (_leaf(2, 3, 4, device=device), _leaf(2, 3, 4, device=device)))


def test_sid_loss_unnormalised(device):
    """w is a stop-gradient, so finite differences see it move: check with w = 1 (normalize=False)."""
    for reduction in ("none", "mean"):
        for alpha in (1.0, 1.2):
            fn = lambda a, b, x: sk.sid_generator_loss(a, b, x, alpha=alpha, normalize=False,
                                                      reduction=reduction, backend="triton")
            assert gradcheck(fn, tuple(_leaf(3, 2, 5, device=device) for _ in range(3)))


def test_sid_loss_normalised_with_w_held(device):
    """With normalisation: the gradient equals that of the loss with w frozen at its forward value.

    Scalar hyper-parameters are fp32 kernel arguments, so alpha = 1.25 (exact in fp32) keeps this exact.
    """
    a, b, x = (_leaf(3, 2, 5, device=device) for _ in range(3))
    w = (x - a).detach().abs().mean(dim=(1, 2)).clamp_min(1e-5)
    frozen = lambda a, b, x: ((a - b) * ((a - x) - 1.25 * (a - b))).sum(dim=(1, 2)) / w
    loss = sk.sid_generator_loss(a, b, x, alpha=1.25, reduction="sum", backend="triton")
    ours = torch.autograd.grad(loss, [a, b, x])
    theirs = torch.autograd.grad(frozen(a, b, x).sum(), [a, b, x])
    for g1, g2 in zip(ours, theirs):
        torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


def test_fake_score_loss(device):
    sigma = torch.tensor([0.05, 0.7, 4.0], dtype=torch.float64, device=device)
    fn = lambda d, y: sk.fake_score_loss(d, y, sigma, reduction="none", backend="triton")
    assert gradcheck(fn, (_leaf(3, 2, 5, device=device), _leaf(3, 2, 5, device=device)))


def test_sample_distance(device):
    """Every kind and reduction; pseudo-Huber with a c exact in fp32 (scalars are fp32 kernel arguments)."""
    for kind, c in (("l2", None), ("l1", None), ("pseudo_huber", 0.25)):
        for reduction in ("none", "mean"):
            fn = lambda a, b: sk.sample_distance(a, b, kind, c=c, reduction=reduction, backend="triton")
            assert gradcheck(fn, (_leaf(3, 2, 5, device=device), _leaf(3, 2, 5, device=device)))
