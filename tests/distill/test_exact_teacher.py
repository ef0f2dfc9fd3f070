"""The analytic teacher: E[x0 | x_t] against a Monte Carlo estimate, its Jacobian against the closed form, the
preconditioners' calling convention, and the Heun sampler on it."""
import math

import pytest
import torch

from sidkernels import sample_heun
from sidkernels.distill.exact_teacher import ExactTeacher, exact_denoiser
from sidkernels.distill.metrics import exact_metrics
from sidkernels.distill.mixture import DigitMixture


@pytest.fixture(scope="module")
def mixture():
    return DigitMixture.from_digits()


def monte_carlo_posterior_mean(mixture, y, sigma, n=400_000, chunk=50_000, seed=0):
    """Self-normalised importance sampling of E[x0 | x0 + sigma eps = y] with the prior as proposal:
    x0_i ~ p, w_i = N(y; x0_i, sigma^2 I), estimate sum w x0 / sum w.  Returns the estimate ``[M, D]`` and its
    delta-method standard error ``sqrt(sum w^2 (x0 - est)^2) / sum w`` (streamed with a running max of log w)."""
    gen = torch.Generator().manual_seed(seed)
    y = y.flatten(1).double()
    m = y.shape[0]
    top = torch.full((m, 1), -math.inf, dtype=torch.float64)
    sums = {k: torch.zeros(m, y.shape[1] if k != "w" and k != "w2" else 1, dtype=torch.float64)
            for k in ("w", "wx", "w2", "w2x", "w2xx")}
    for _ in range(n // chunk):
        x0 = mixture.sample(chunk, generator=gen, dtype=torch.float64)[0].flatten(1)
        log_w = -torch.cdist(y, x0).square() / (2 * sigma ** 2)
        new_top = torch.maximum(top, log_w.max(1, keepdim=True).values)
        shrink = torch.exp(top - new_top)
        for key in sums:
            sums[key] *= shrink ** (2 if key.startswith("w2") else 1)
        top = new_top
        w = torch.exp(log_w - top)
        sums["w"] += w.sum(1, keepdim=True)
        sums["wx"] += w @ x0
        sums["w2"] += (w * w).sum(1, keepdim=True)
        sums["w2x"] += (w * w) @ x0
        sums["w2xx"] += (w * w) @ (x0 * x0)
    est = sums["wx"] / sums["w"]
    spread = sums["w2xx"] - 2 * est * sums["w2x"] + est * est * sums["w2"]
    return est, spread.clamp_min(0).sqrt() / sums["w"]


@pytest.mark.parametrize("sigma", [0.5, 1.5, 5.0])
def test_posterior_mean_matches_monte_carlo(mixture, sigma):
    gen = torch.Generator().manual_seed(7)
    x0, _ = mixture.sample(4, generator=gen, dtype=torch.float64)
    y = x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    est, se = monte_carlo_posterior_mean(mixture, y, sigma)
    tolerance = 5 * se + 2e-3
    exact = ExactTeacher(mixture)(y, sigma).double().flatten(1)
    assert ((exact - est).abs() <= tolerance).all(), f"max |D - MC| / tol = {((exact - est).abs() / tolerance).max():.2f}"
    # the check has power: the denoiser of a slightly different mixture (component std 0.13) fails it
    wrong = exact_denoiser(y, torch.tensor(sigma), mixture.means.flatten(1), 0.13).flatten(1)
    assert ((wrong - est).abs() > tolerance).any()


def responsibilities(mixture, y, sigma):
    """r_k(y) written out directly: softmax_k of log N(y; mu_k, (s^2 + sigma^2) I)."""
    var = mixture.std ** 2 + sigma ** 2
    d2 = ((y.flatten(1)[:, None, :] - mixture.means.flatten(1)[None]) ** 2).sum(-1)
    return torch.softmax(-d2 / (2 * var), dim=1)


@pytest.mark.parametrize("sigma", [0.05, 0.8, 20.0])
def test_input_gradient_matches_closed_form_jacobian(mixture, sigma):
    """dD/dy = (s^2/v) I + (sigma^2/v^2) Cov_r[mu]; the module's vector-Jacobian products (fp32 output) match it."""
    gen = torch.Generator().manual_seed(3)
    x0, _ = mixture.sample(3, generator=gen, dtype=torch.float64)
    y = (x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64)).float().requires_grad_(True)
    D = ExactTeacher(mixture)(y, torch.full((3,), sigma))
    assert D.dtype == torch.float32
    v = torch.randn(D.shape, generator=gen)
    (vjp,) = torch.autograd.grad(D, y, v)
    var = mixture.std ** 2 + sigma ** 2
    r = responsibilities(mixture, y.detach().double(), sigma)
    mu = mixture.means.flatten(1)
    mean = r @ mu
    cov = torch.einsum("nk,kd,ke->nde", r, mu, mu) - mean[:, :, None] * mean[:, None, :]
    jac = mixture.std ** 2 / var * torch.eye(mu.shape[1], dtype=torch.float64) + sigma ** 2 / var ** 2 * cov
    expected = torch.einsum("nd,nde->ne", v.flatten(1).double(), jac)
    torch.testing.assert_close(vjp.flatten(1).double(), expected, rtol=1e-4, atol=1e-5)


def test_gradcheck_fp64():
    means = torch.randn(5, 6, dtype=torch.float64)
    x = torch.randn(3, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: exact_denoiser(t, sigma, means, 0.4), (x,))


def test_calling_convention(mixture):
    teacher = ExactTeacher(mixture)
    assert (teacher.img_resolution, teacher.img_channels, teacher.label_dim) == (8, 1, 0)
    assert not list(teacher.parameters())
    x = torch.randn(5, 1, 8, 8) * 2
    sigma = torch.tensor([0.01, 0.3, 1.0, 4.0, 80.0])
    D = teacher(x, sigma)
    assert D.dtype == torch.float32 and D.shape == x.shape
    torch.testing.assert_close(D, mixture.denoise(x.double(), sigma).float())  # the mixture's own implementation
    torch.testing.assert_close(teacher(x, sigma.view(5, 1, 1, 1)), D, rtol=0, atol=0)
    torch.testing.assert_close(teacher(x[:2], 0.7), teacher(x[:2], torch.full((2,), 0.7)), rtol=0, atol=0)
    torch.testing.assert_close(teacher(x, 0.0), x, rtol=0, atol=1e-6)  # no noise: D(x) = x
    # net_input (c_in x, possibly rounded) is shape-checked and not used; autocast does not round the math
    rounded = (x / (sigma.view(5, 1, 1, 1) ** 2 + 0.25).sqrt()).bfloat16()
    torch.testing.assert_close(teacher(x, sigma, None, net_input=rounded), D, rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(teacher(x, sigma), D, rtol=0, atol=0)
    nan = x.clone()
    nan[1, 0, 2, 2] = float("nan")
    out = teacher(nan, sigma)
    assert out[1].isnan().all() and not out[[0, 2, 3, 4]].isnan().any()


def test_bad_input_is_refused(mixture):
    teacher = ExactTeacher(mixture)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 1, 8, 8\]"):
        teacher(torch.randn(2, 3, 8, 8), 1.0)
    with pytest.raises(ValueError, match="sigma must be a scalar or have one value per sample"):
        teacher(x, torch.ones(3))
    with pytest.raises(ValueError, match="net_input must have the shape of x"):
        teacher(x, 1.0, net_input=torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="output must be 'decoder'"):
        teacher(x, 1.0, output="encoder")
    with pytest.raises(ValueError, match="augment_labels must be None"):
        teacher(x, 1.0, augment_labels=torch.zeros(2, 9))
    with pytest.raises(ValueError, match="std must be > 0"):
        ExactTeacher(DigitMixture(means=mixture.means, classes=mixture.classes, std=0.0))


def test_heun_on_the_exact_teacher_reaches_the_mixture(mixture):
    """35-NFE Heun of the exact ODE: close to exact samples in FD (at equal sample count) and NLL."""
    latents = torch.randn((2000, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    heun = exact_metrics(mixture, sample_heun(ExactTeacher(mixture), latents, num_steps=18).float())
    exact = exact_metrics(mixture, mixture.sample(2000, generator=torch.Generator().manual_seed(1))[0])
    assert heun["fd"] < 1.3 * exact["fd"] and heun["fd"] < 0.12, (heun, exact)
    assert heun["nll"] < exact["nll"] + 0.2 and heun["class_kl"] < 0.01, (heun, exact)
