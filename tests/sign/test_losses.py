"""SIGN/IGN loss terms: gradient routing through the frozen copy, stop-gradient targets (the distances
themselves: tests/ref/test_distance_ref.py, tests/ops/test_distance.py)."""
import pytest
import torch

from sidkernels import sample_distance
from sidkernels.sign import losses as L
from sidkernels.sign.student import IdempotentStudent, copy_call, estimate_sigma


class Linear(torch.nn.Module):
    """f(u) = W u on flattened samples: small enough to derive every gradient by hand."""

    def __init__(self, d):
        super().__init__()
        self.W = torch.nn.Parameter(torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, dtype=torch.float64))

    def forward(self, u, labels=None):
        return (u.flatten(1) @ self.W.T).view_as(u)


def test_idempotence_gradient_follows_the_ign_routing():
    """L_idem = mean_n |(W^- - I) W z_n|^2 / d with W^- a detached copy:
    dL/dW = 2/(N d) (W - I)^T (W - I) W sum_n z_n z_n^T  (no term from the copy's parameters)."""
    d, n = 5, 7
    f = Linear(d)
    z = torch.randn(n, d, dtype=torch.float64)
    loss = L.idem_loss(f, f(z), None, "l2")
    (grad,) = torch.autograd.grad(loss, [f.W])
    W, I = f.W.detach(), torch.eye(d, dtype=torch.float64)
    expected = 2 / (n * d) * (W - I).T @ (W - I) @ W @ (z.T @ z)
    torch.testing.assert_close(grad, expected)
    # the naive objective (gradient through both applications of f) is different: the copy matters
    naive = ((f(f(z)) - f(z)) ** 2).mean()
    (naive_grad,) = torch.autograd.grad(naive, [f.W])
    assert (naive_grad - expected).abs().max() > 1e-3


def test_copy_passes_gradient_to_its_input_only():
    f = Linear(4)
    u = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out = copy_call(f, u)
    g_u, = torch.autograd.grad(out.sum(), [u], retain_graph=True)
    torch.testing.assert_close(g_u, f.W.detach().sum(0).expand(3, 4))
    with pytest.raises(RuntimeError):
        torch.autograd.grad(out.sum(), [f.W])  # the copy's output does not depend on the parameters


def test_flow_target_carries_no_gradient():
    f = Linear(64)
    teacher = lambda x, sigma, labels=None: 0.5 * x  # an affine stand-in denoiser
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    grid = L.karras_grid(5)
    torch.manual_seed(0)
    pred, target = L.flow_pair(f, teacher, x, None, grid)
    assert pred.requires_grad and not target.requires_grad and target.grad_fn is None
    loss = sample_distance(pred, target, "l2", reduction="mean")
    grads = torch.autograd.grad(loss, [f.W, x])
    torch.manual_seed(0)
    pred2, target2 = L.flow_pair(f, teacher, x, None, grid)
    manual = torch.autograd.grad(((pred2 - target2.detach()) ** 2).mean(), [f.W, x])
    for a, b in zip(grads, manual):
        torch.testing.assert_close(a, b)


def test_karras_grid_and_euler_step():
    grid = L.karras_grid(18)
    assert grid[0] == 0 and abs(grid[1].item() - 0.002) < 1e-7 and abs(grid[-1].item() - 80) < 1e-4
    assert torch.all(grid[1:] > grid[:-1])
    # the exact denoiser of a point mass at mu: D = mu; one Euler step to t = 0 lands exactly on mu
    mu = torch.randn(2, 1, 4, 4)
    teacher = lambda x, sigma, labels=None: mu
    x = mu + 3.0 * torch.randn_like(mu)
    out = L.euler_step(teacher, x, torch.full((2,), 3.0), torch.zeros(2))
    torch.testing.assert_close(out, mu)


def test_ign_tightness_is_clamped_and_routed_through_the_outer_f():
    f = Linear(16)
    z = torch.randn(5, 16, dtype=torch.float64) * 3
    rec = torch.rand(5, dtype=torch.float64) + 0.1
    tight = L.ign_tight_loss(f, z, None, rec, "l1", a=1.5)
    assert -1.5 * rec.mean() <= tight <= 0
    (grad,) = torch.autograd.grad(tight, [f.W])
    inner = f(z).detach()
    raw = -(f(inner) - inner).abs().mean(1)
    manual = (torch.tanh(raw / (1.5 * rec)) * 1.5 * rec).mean()
    torch.testing.assert_close(grad, torch.autograd.grad(manual, [f.W])[0])


def test_noise_estimate_tracks_white_noise():
    torch.manual_seed(0)
    for sigma in (0.5, 5.0, 80.0):
        est = estimate_sigma(sigma * torch.randn(4, 3, 32, 32))
        assert torch.allclose(est, torch.full((4,), sigma), rtol=0.1)


def test_student_rejects_bad_modes():
    with pytest.raises(ValueError, match="time_mode"):
        IdempotentStudent(torch.nn.Identity(), "learned")


def test_renoised_generation_replaces_a_fraction_by_one_detached_renoised_step():
    torch.manual_seed(0)
    f = Linear(4096)
    with torch.no_grad():
        f.W.copy_(torch.eye(4096, dtype=torch.float64))  # f = identity: a re-noised sample is x_g + s eps
    x_g = torch.randn(8, 4096, dtype=torch.float64, requires_grad=True)
    out = L.renoised_generation(f, x_g, None, 0.5, (0.2, 5.0))
    assert out.shape == x_g.shape and torch.equal(out[:4], x_g[:4])
    sigmas = (out[4:] - x_g[4:]).detach().std(dim=1)
    assert bool(((sigmas > 0.2 * 0.95) & (sigmas < 5.0 * 1.05)).all()), sigmas
    assert len(set(sigmas.round(decimals=2).tolist())) == 4  # one level per sample
    # the re-noised samples start from sg(x_g): gradient reaches x_g only through the kept samples,
    # and reaches f's parameters through the re-noised ones
    gx, gw = torch.autograd.grad(out.sum(), [x_g, f.W])
    assert torch.equal(gx[4:], torch.zeros_like(gx[4:])) and torch.equal(gx[:4], torch.ones_like(gx[:4]))
    assert gw.abs().sum() > 0
    assert L.renoised_generation(f, x_g, None, 0.0, (0.2, 5.0)) is x_g
