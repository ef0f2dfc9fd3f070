"""The embedded mixture: the analytic denoiser and density are exact; the metrics behave."""
import math

import torch

from sidkernels.distill.metrics import class_kl, exact_metrics, frechet_distance
from sidkernels.distill.mixture import DigitMixture


def small_mixture():
    return DigitMixture.from_digits(per_class=3, std=0.15, seed=1)


def test_denoiser_satisfies_tweedie():
    """D(y, sigma) = y + sigma^2 grad log p_sigma(y), with the noisy marginal written out independently."""
    m = small_mixture()
    for sigma in (0.05, 0.4, 3.0):
        var = m.std ** 2 + sigma ** 2
        y = (m.sample(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)[0]
             + sigma * torch.randn(6, 1, 8, 8, dtype=torch.float64)).requires_grad_(True)
        sq = ((y.flatten(1)[:, None] - m.means.flatten(1)[None]) ** 2).sum(-1)
        log_p = torch.logsumexp(-sq / (2 * var), dim=1).sum()
        (score,) = torch.autograd.grad(log_p, y)
        torch.testing.assert_close(m.denoise(y.detach(), torch.tensor(sigma)), y.detach() + sigma ** 2 * score)


def test_log_prob_normalised_in_one_dimension_slice():
    """log_prob of a mixture with one component equals the Gaussian log density."""
    m = DigitMixture(means=torch.zeros(1, 1, 8, 8, dtype=torch.float64), classes=torch.tensor([3]), std=0.5)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    expected = -0.5 * (x.flatten(1) ** 2).sum(1) / 0.25 - 32 * math.log(2 * math.pi * 0.25)
    torch.testing.assert_close(m.log_prob(x), expected)


def test_metrics_separate_good_and_bad_samples():
    m = small_mixture()
    good, _ = m.sample(3000, generator=torch.Generator().manual_seed(2))
    bad = torch.randn(3000, 1, 8, 8) * 0.3
    g, b = exact_metrics(m, good), exact_metrics(m, bad)
    assert g["fd"] < 0.1 < 5 < b["fd"]
    assert g["nll"] < b["nll"] and g["class_kl"] < 0.02


def test_frechet_distance_of_gaussians():
    mean, cov = torch.zeros(3, dtype=torch.float64), torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    x = torch.randn(200_000, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0]).sqrt() + 1.0
    assert abs(frechet_distance(x, mean, cov) - 3.0) < 0.05  # |m|^2 = 3, covariances equal


def test_class_kl():
    assert class_kl(torch.arange(10).repeat(5), torch.full((10,), 0.1, dtype=torch.float64)) < 1e-12
    assert abs(class_kl(torch.zeros(7, dtype=torch.long), torch.full((10,), 0.1, dtype=torch.float64))
               - math.log(10)) < 1e-12
