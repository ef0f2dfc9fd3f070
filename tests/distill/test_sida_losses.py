"""SiDA's objectives against the official formulation (docs/sid.md §4) written with plain autograd and boolean
NaN filtering, on the same random draws."""
import pytest
import torch
import torch.nn.functional as F

import sidkernels as sk
from sidkernels.distill.sida_losses import bce_with_logits_mean, sida_fake_loss, sida_generator_loss
from tests.distill.test_sid_losses import tiny_nets

N = 5


def edm_weight(sigma):
    return ((sigma ** 2 + 0.25) / (sigma * 0.5) ** 2).view(-1, 1, 1, 1)


def official_fake_loss(G, fake, z, reals, scale, scale_d):
    """sida_loss.fakescore_discriminator_share_encoder_loss + the loop's sums, transcribed."""
    n = z.shape[0]
    with torch.no_grad():
        y = G(2.5 * z, torch.full((n,), 2.5))
    sigma = sk.sample_sigma_lognormal(n)
    noise = torch.randn_like(y) * sigma.view(-1, 1, 1, 1)
    y_fake, logit_fake = fake(y + noise, sigma, output="both")
    logit_real = fake(reals + noise, sigma, output="encoder")
    keep = ~(y.isnan().flatten(1).any(1) | y_fake.isnan().flatten(1).any(1)
             | logit_fake.isnan().flatten(1).any(1) | logit_real.isnan().flatten(1).any(1))
    weight = edm_weight(sigma)[keep]
    denoising = (weight * (y_fake[keep] - y[keep]) ** 2).sum() * scale
    loss_real = F.binary_cross_entropy_with_logits(logit_real[keep], torch.ones_like(logit_real[keep]))
    loss_fake = F.binary_cross_entropy_with_logits(logit_fake[keep], torch.zeros_like(logit_fake[keep]))
    return denoising, (weight * (loss_real + loss_fake) / 2).sum() * scale_d


def official_generator_loss(G, teacher, fake, z, alpha, scale, scale_gan):
    """sida_loss.generator_share_encoder_loss + the loop's sums, transcribed."""
    n = z.shape[0]
    x_g = G(2.5 * z, torch.full((n,), 2.5))
    sigma = sk.sample_sigma_sid(n)
    x_t = x_g + sigma.view(-1, 1, 1, 1) * torch.randn_like(x_g)
    a = teacher(x_t, sigma)
    b, logits = fake(x_t, sigma, output="both")
    with torch.no_grad():
        w = (x_g - a).abs().mean(dim=[1, 2, 3], keepdim=True).clip(min=1e-5)
    loss = ((a - b) * ((a - x_g) - alpha * (a - b)) / w).sum() * scale
    bce = F.binary_cross_entropy_with_logits(logits.clamp(-10, 10), torch.ones_like(logits))
    gan = (bce / w * x_g[0].numel()).sum() * scale_gan
    return loss, gan


def grads(loss, net):
    return torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad], allow_unused=True)


def assert_grads_close(ours, theirs):
    for a, b in zip(ours, theirs):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("nan_row", [None, 2])
def test_fake_objective_matches_official(nan_row):
    G, _, fake = tiny_nets()
    fake.train().requires_grad_(True)
    z = torch.randn(N, 1, 8, 8)
    reals = torch.rand(N, 1, 8, 8) * 2 - 1
    if nan_row is not None:
        reals[nan_row, 0, 3, 3] = float("nan")
    torch.manual_seed(7)
    ours = sida_fake_loss(G, fake, z, None, reals, init_sigma=2.5, scale=1 / N, scale_d=1 / N,
                          net_dtype=torch.float32)
    torch.manual_seed(7)
    theirs = official_fake_loss(G, fake, z, reals, 1 / N, 1 / N)
    for o, t in zip(ours, theirs):
        assert torch.isfinite(o)
        torch.testing.assert_close(o, t, rtol=1e-5, atol=1e-5)
    assert ours[1] > 0
    if nan_row is None:  # NaN inputs poison network weight gradients in both (the trainer's nan_to_num cleans)
        assert_grads_close(grads(sum(ours), fake), grads(sum(theirs), fake))


@pytest.mark.parametrize("alpha", [1.0, 1.2])
def test_generator_objective_matches_official(alpha):
    G, teacher, fake = tiny_nets()
    z = torch.randn(N, 1, 8, 8)
    torch.manual_seed(11)
    ours = sida_generator_loss(G, teacher, fake, z, None, init_sigma=2.5, alpha=alpha, tmax=800, scale=100 / N,
                               scale_gan=0.01 / N, net_dtype=torch.float32)
    torch.manual_seed(11)
    theirs = official_generator_loss(G, teacher, fake, z, alpha, 100 / N, 0.01 / N)
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t, rtol=1e-5, atol=1e-5)
    assert ours[1] > 0
    total_ours, total_theirs = 0.5 * ours[0] + 0.5 * ours[1], 0.5 * theirs[0] + 0.5 * theirs[1]
    assert_grads_close(grads(total_ours, G), grads(total_theirs, G))


def test_generator_objective_without_gan_is_the_sid_loss():
    from sidkernels.distill.sid_losses import generator_loss
    G, teacher, fake = tiny_nets()
    z = torch.randn(N, 1, 8, 8)
    torch.manual_seed(5)
    loss_sid, loss_gan = sida_generator_loss(G, teacher, fake, z, None, init_sigma=2.5, alpha=1.0, tmax=800,
                                             scale=1.0, scale_gan=1.0, net_dtype=torch.float32, with_gan=False)
    torch.manual_seed(5)
    expected = generator_loss(G, teacher, fake, z, None, init_sigma=2.5, alpha=1.0, tmax=800, scale=1.0,
                              net_dtype=torch.float32)
    assert loss_gan.item() == 0.0
    torch.testing.assert_close(loss_sid, expected, rtol=0, atol=0)


def test_masked_bce_mean_matches_filtered_bce_and_keeps_nan_out():
    logits = torch.randn(6, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([True, False, True, True, False, True])
    with torch.no_grad():
        logits[1, 0, 1, 1] = float("nan")
    for real in (True, False):
        ours = bce_with_logits_mean(logits, real, keep)
        target = torch.full_like(logits[keep], float(real))
        theirs = F.binary_cross_entropy_with_logits(logits[keep].float(), target.float())
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
        (grad,) = torch.autograd.grad(ours, logits)
        assert torch.isfinite(grad).all() and (grad[~keep] == 0).all()
    none_kept = bce_with_logits_mean(logits, True, torch.zeros(6, dtype=torch.bool))
    assert none_kept.item() == 0.0


def test_both_objectives_trace_into_one_graph():
    """The trainer compiles them with fullgraph=True (no host sync, no data-dependent shape)."""
    G, teacher, fake = tiny_nets()
    z, reals = torch.randn(N, 1, 8, 8), torch.rand(N, 1, 8, 8)
    kw = dict(init_sigma=2.5, net_dtype=torch.float32)
    runs = {
        sida_fake_loss: ((G, fake, z, None, reals), dict(kw, scale=0.2, scale_d=0.2, augment_p=0.0)),
        sida_generator_loss: ((G, teacher, fake, z, None), dict(kw, alpha=1.0, tmax=800, scale=20.0, scale_gan=0.002)),
    }
    for fn, (args, kwargs) in runs.items():
        torch.manual_seed(2)
        eager = fn(*args, **kwargs)
        torch.manual_seed(2)
        compiled = torch.compile(fn, backend="eager", fullgraph=True)(*args, **kwargs)
        for e, c in zip(eager, compiled):
            torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-5)
