"""The references against an independent transcription of the official SiD losses (boolean-index drop,
autograd for the gradients, fp64)."""
import pytest
import torch

from sidkernels.ref import fake_score_loss_ref, sid_generator_loss_ref
from tests.helpers import assert_close


def official_generator_loss(a, b, x, alpha, batch_total):
    """SID.md 1: drop NaN samples by boolean indexing, w = no-grad clamp(mean|x - a|), sum, scale 1/B."""
    keep = ~(torch.isnan(x).flatten(1).any(1) | torch.isnan(a).flatten(1).any(1) | torch.isnan(b).flatten(1).any(1))
    a, b, x = a[keep], b[keep], x[keep]
    with torch.no_grad():
        w = (x - a).abs().mean(dim=[1, 2, 3], keepdim=True).clip(min=1e-5)
    loss = (a - b) * ((a - x) - alpha * (a - b)) / w
    return loss.sum() / batch_total


def official_fake_loss(d, y, sigma, batch_total, sigma_data=0.5):
    """SID.md 2: lambda(sigma) (D - y)^2, NaN samples dropped, summed, scaled 1/B."""
    keep = ~(torch.isnan(y).flatten(1).any(1) | torch.isnan(d).flatten(1).any(1))
    lam = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    return (lam[keep].view(-1, 1, 1, 1) * (d[keep] - y[keep]) ** 2).sum() / batch_total


@pytest.mark.parametrize("alpha", [1.0, 1.2, 0.5])
@pytest.mark.parametrize("nan_rows", [(), (1,), (0, 3)])
def test_generator_loss_ref_matches_official(alpha, nan_rows):
    a, b, x = (torch.randn(5, 3, 4, 6, dtype=torch.float64, requires_grad=True) for _ in range(3))
    inputs = [a, b, x]
    with torch.no_grad():
        poisoned = [t.clone() for t in inputs]
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


def test_generator_loss_alpha_one_identity():
    """For alpha = 1 the loss is (a - b)(b - x) / w (SID.md 1.7)."""
    a, b, x = (torch.randn(3, 2, 5, 5, dtype=torch.float64) for _ in range(3))
    w = (x - a).abs().mean(dim=[1, 2, 3])
    expected = ((a - b) * (b - x)).sum(dim=[1, 2, 3]) / w
    assert_close(sid_generator_loss_ref(a, b, x, 1.0), expected)


@pytest.mark.parametrize("nan_rows", [(), (2,)])
def test_fake_loss_ref_matches_official(nan_rows):
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
