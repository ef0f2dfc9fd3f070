"""The generator objective's wiring against the official formulation written with plain autograd."""
import copy

import pytest
import torch

import sidkernels as sk
from sidkernels.distill.sid_losses import fake_score_loss_on_generator, generator_loss
from sidkernels.distill.mixture_teacher import mixture_network


def tiny_nets():
    torch.manual_seed(0)
    teacher = mixture_network(model_channels=16).requires_grad_(False)
    fake = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in fake.parameters():
            p.add_(0.05 * torch.randn_like(p))  # so that fake != teacher and the loss is not trivial
    G = copy.deepcopy(teacher).requires_grad_(True)
    return G, teacher.eval(), fake.eval()


def official_generator_loss(G, teacher, fake, z, alpha, lsg):
    """docs/sid.md §1.2-§1.3, transcribed: x_g = G(2.5 z, 2.5); sigma ~ SiD schedule; x_t = x_g + sigma eps;
    a, b from the wrapped networks (their own input scaling); w = no-grad clip(mean|x_g - a|); sum * lsg/B."""
    n = z.shape[0]
    x_g = G(2.5 * z, torch.full((n,), 2.5))
    sigma = sk.sample_sigma_sid(n)
    x_t = x_g + sigma.view(-1, 1, 1, 1) * torch.randn_like(x_g)
    a, b = teacher(x_t, sigma), fake(x_t, sigma)
    with torch.no_grad():
        w = (x_g - a).abs().mean(dim=[1, 2, 3], keepdim=True).clip(min=1e-5)
    return ((a - b) * ((a - x_g) - alpha * (a - b)) / w).sum() * lsg / n


@pytest.mark.parametrize("alpha", [1.0, 1.2])
def test_generator_gradient_matches_official(alpha):
    G, teacher, fake = tiny_nets()
    z = torch.randn(4, 1, 8, 8)
    torch.manual_seed(7)
    ours = generator_loss(G, teacher, fake, z, None, init_sigma=2.5, alpha=alpha, tmax=800, scale=100 / 4,
                          net_dtype=torch.float32)
    g_ours = torch.autograd.grad(ours, list(G.parameters()))
    torch.manual_seed(7)
    theirs = official_generator_loss(G, teacher, fake, z, alpha, lsg=100)
    g_theirs = torch.autograd.grad(theirs, list(G.parameters()))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # the teacher and fake weights are frozen; only G's input path carries gradient
    assert all(p.grad is None for p in list(teacher.parameters()) + list(fake.parameters()))


def test_generator_gradient_flows_through_both_networks():
    """Dropping the networks' input paths (detaching x_t) changes G's gradient: both paths are live."""
    G, teacher, fake = tiny_nets()
    z = torch.randn(3, 1, 8, 8)
    torch.manual_seed(1)
    full = torch.autograd.grad(generator_loss(G, teacher, fake, z, None, init_sigma=2.5, alpha=1.2, tmax=800,
                                              scale=1.0, net_dtype=torch.float32), list(G.parameters()))
    torch.manual_seed(1)
    x_g = G(2.5 * z, torch.full((3,), 2.5))
    sigma = sk.sample_sigma_sid(3)
    x_t = (x_g + sigma.view(-1, 1, 1, 1) * torch.randn_like(x_g)).detach()
    direct_only = sk.sid_generator_loss(teacher(x_t, sigma), fake(x_t, sigma), x_g, reduction="sum")
    partial = torch.autograd.grad(direct_only, list(G.parameters()))
    assert any((a - b).abs().max() > 1e-4 * a.abs().max() for a, b in zip(full, partial))


def test_fake_objective_matches_edm_loss():
    G, _, fake = tiny_nets()
    fake.train().requires_grad_(True)
    z = torch.randn(4, 1, 8, 8)
    torch.manual_seed(3)
    ours = fake_score_loss_on_generator(G, fake, z, None, init_sigma=2.5, scale=1 / 4, net_dtype=torch.float32)
    torch.manual_seed(3)
    with torch.no_grad():
        y = G(2.5 * z, torch.full((4,), 2.5))
    sigma = sk.sample_sigma_lognormal(4)
    D = fake(y + sigma.view(-1, 1, 1, 1) * torch.randn_like(y), sigma)
    lam = ((sigma ** 2 + 0.25) / (sigma * 0.5) ** 2).view(-1, 1, 1, 1)
    theirs = (lam * (D - y) ** 2).sum() / 4
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(torch.autograd.grad(ours, list(fake.parameters())),
                    torch.autograd.grad(theirs, list(fake.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
