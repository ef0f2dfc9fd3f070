"""Exact sample-quality metrics against the embedded mixture (no Inception network needed).

    Frechet distance  |m - m*|^2 + tr(C + C* - 2 (C^1/2 C* C^1/2)^1/2)   (pixel space, exact m*, C*)
    NLL               -mean_i log p*(x_i) / D                          (nats per dimension)
    class KL          KL(q || p*) over digit classes, q = frequencies of the nearest component's class
"""
from __future__ import annotations

import math

import torch

from sidkernels.distill.mixture import DigitMixture


def _sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(c)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> float:
    """Frechet distance between the Gaussian fitted to samples ``x`` and ``N(mean, cov)``."""
    x = x.flatten(1).double()
    m = x.mean(0)
    c = torch.cov(x.T)
    root = _sqrtm_psd(c)
    cross = torch.linalg.eigvalsh(root @ cov @ root).clamp_min(0).sqrt().sum()
    return float((m - mean).square().sum() + torch.trace(c) + torch.trace(cov) - 2 * cross)


def class_kl(classes: torch.Tensor, target: torch.Tensor) -> float:
    """KL(q || target) for the empirical class frequencies q of ``classes``."""
    q = torch.bincount(classes, minlength=len(target)).double() / len(classes)
    nz = q > 0
    return float((q[nz] * (q[nz] / target[nz]).log()).sum())


def exact_metrics(mixture: DigitMixture, x: torch.Tensor) -> dict[str, float]:
    """All three metrics for samples ``x`` ``[N, 1, 8, 8]`` (needs N >= 2)."""
    x = x.detach().cpu()
    mean, cov = mixture.moments()
    target = torch.bincount(mixture.classes, minlength=10).double() / len(mixture.classes)
    nll = -mixture.log_prob(x).mean().item() / mixture.dim
    return {
        "fd": frechet_distance(x, mean, cov),
        "nll": nll if math.isfinite(nll) else float("inf"),
        "class_kl": class_kl(mixture.nearest_class(x), target),
    }
