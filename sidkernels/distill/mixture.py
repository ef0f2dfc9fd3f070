"""The embedded target distribution: a Gaussian mixture whose component means are real digit images.

The means are scikit-learn's 8x8 handwritten digits (shipped inside the package, no download), scaled
from [0, 16] to [-1, 1]; component k is ``N(mu_k, s^2 I)`` with weight 1/K.  Everything is exact:

    noisy marginal   p_sigma(y) = sum_k pi_k N(y; mu_k, (s^2 + sigma^2) I)
    denoiser         D(y, sigma) = sum_k r_k(y) [mu_k + s^2/(s^2 + sigma^2) (y - mu_k)],
                     r_k(y) = softmax_k(log pi_k - |y - mu_k|^2 / (2 (s^2 + sigma^2)))
    moments          mean = sum_k pi_k mu_k,  cov = s^2 I + sum_k pi_k (mu_k - mean)(mu_k - mean)^T
"""
from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass
class DigitMixture:
    means: torch.Tensor    # [K, 1, 8, 8], float64
    classes: torch.Tensor  # [K], digit class of each component
    std: float             # s, the per-component standard deviation
    _copies: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_digits(cls, per_class: int = 20, std: float = 0.1, seed: int = 0) -> "DigitMixture":
        """``per_class`` digit images of each class 0..9, chosen with ``seed``."""
        from sklearn.datasets import load_digits
        digits = load_digits()
        images = torch.from_numpy(digits.images).double() / 8.0 - 1.0
        targets = torch.from_numpy(digits.target)
        gen = torch.Generator().manual_seed(seed)
        picks = []
        for c in range(10):
            idx = (targets == c).nonzero().flatten()
            if per_class > len(idx):
                raise ValueError(f"per_class must be <= {len(idx)} (images of digit {c}), got {per_class}")
            picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
        picks = torch.cat(picks)
        return cls(means=images[picks].unsqueeze(1), classes=targets[picks], std=float(std))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.means.shape[1:])

    @property
    def dim(self) -> int:
        return self.means[0].numel()

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32, device=None):
        """Exact samples ``[n, 1, 8, 8]`` and their components' digit classes, drawn on ``device`` (default the
        CPU; a training loop draws on its GPU, with no copy from the host)."""
        means, classes = self._on(torch.device("cpu") if device is None else torch.device(device))
        k = torch.randint(len(means), (n,), generator=generator, device=means.device)
        noise = torch.randn((n, *self.shape), generator=generator, dtype=torch.float64, device=means.device)
        return (means[k] + self.std * noise).to(dtype), classes[k]

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._copies:
            self._copies[device] = (self.means.to(device), self.classes.to(device))
        return self._copies[device]

    def _log_resp(self, y: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Unnormalised log responsibilities ``[N, K]`` for points y with per-sample variance ``var [N]``."""
        y = y.flatten(1).double()
        mu = self.means.flatten(1)
        sq = (y * y).sum(1, keepdim=True) - 2 * y @ mu.T + (mu * mu).sum(1)
        return -sq / (2 * var[:, None])

    def denoise(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The exact denoiser E[x | x + sigma*eps = y] (fp64 math), in y's dtype and shape."""
        s2 = self.std ** 2
        sig2 = sigma.reshape(-1).double().expand(y.shape[0]) ** 2
        resp = torch.softmax(self._log_resp(y, s2 + sig2), dim=1)
        mean_mu = resp @ self.means.flatten(1)
        shrink = (s2 / (s2 + sig2))[:, None]
        out = mean_mu + shrink * (y.flatten(1).double() - mean_mu)
        return out.view_as(y).to(y.dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density ``[N]`` (nats) of clean samples."""
        var = torch.full((x.shape[0],), self.std ** 2, dtype=torch.float64)
        log_norm = -0.5 * self.dim * math.log(2 * math.pi * self.std ** 2) - math.log(len(self.means))
        return torch.logsumexp(self._log_resp(x, var), dim=1) + log_norm

    def nearest_class(self, x: torch.Tensor) -> torch.Tensor:
        """Digit class of the most responsible component for each sample."""
        var = torch.full((x.shape[0],), self.std ** 2, dtype=torch.float64)
        return self.classes[self._log_resp(x, var).argmax(1)]

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact mean ``[D]`` and covariance ``[D, D]`` (fp64)."""
        mu = self.means.flatten(1)
        mean = mu.mean(0)
        centred = mu - mean
        return mean, self.std ** 2 * torch.eye(self.dim, dtype=torch.float64) + centred.T @ centred / len(mu)
