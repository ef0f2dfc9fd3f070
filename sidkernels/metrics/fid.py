"""Frechet Inception Distance: feature statistics in fp64 and the Frechet distance between two Gaussians.

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

``mu``/``S`` are the mean and the unbiased covariance (divisor n - 1) of a detector's features over a set of
images.  Reference statistics are EDM's ``fid-refs/*.npz`` files: ``mu`` [D] and ``sigma`` [D, D] in fp64
(files written here add ``num_images`` and ``detector_sha256``, which EDM's reader ignores).

The square root is ``scipy.linalg.sqrtm`` of the product, as EDM and pytorch-fid compute it.  Where it fails
(non-finite entries, or an imaginary part above 1e-3 on its diagonal: possible for the near-singular
covariances of fewer images than feature dimensions) ``eps * I`` is added to both covariances and the root is
taken again, pytorch-fid's fix, with a :class:`FIDWarning`.  Statistics of ``n <= D`` images also warn: their
covariance is singular and the FID is biased upwards (the field's protocol uses 50,000 images).
"""
from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

SQRTM_EPS = 1e-6   # pytorch-fid's diagonal offset when the square root fails
IMAG_TOL = 1e-3    # imaginary part on the root's diagonal still taken as round-off (pytorch-fid's tolerance)


class FIDWarning(UserWarning):
    """A FID computed from singular statistics, or with the square root's diagonal offset."""


def _gaussian(mu, sigma, mu_name: str, sigma_name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or mu.size == 0:
        raise ValueError(f"{mu_name} must be a non-empty vector [D], got shape {list(mu.shape)}")
    if sigma.shape != (mu.size, mu.size):
        raise ValueError(f"{sigma_name} must be [D, D] = {[mu.size, mu.size]} (D from {mu_name}), got "
                         f"{list(sigma.shape)}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{mu_name} and {sigma_name} must be finite")
    if np.abs(sigma - sigma.T).max() > 1e-6 * max(np.abs(sigma).max(), 1e-300):
        raise ValueError(f"{sigma_name} must be symmetric (a covariance matrix)")
    return mu, sigma


def _sqrtm_product(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """The real part of ``sqrtm(a @ b)``, or None when the root failed (see the module docstring)."""
    import scipy.linalg

    with warnings.catch_warnings():
        # scipy notices exactly singular products; the result is checked here instead
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(a @ b)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        if np.abs(np.diagonal(root).imag).max() > IMAG_TOL:
            return None
        root = root.real
    return root


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = SQRTM_EPS) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``: ``|mu1 - mu2|^2 + tr(sigma1) +
    tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``, computed in fp64.

    ``mu*``: [D] and ``sigma*``: [D, D] symmetric, array-likes of any float dtype, finite (NaN/inf raise).
    Symmetric in its two Gaussians and 0 (to round-off) for identical ones.  When the square root fails
    (near-singular covariances) it is retaken with ``eps`` added to both diagonals, with a
    :class:`FIDWarning`; the trace terms keep the unshifted covariances.
    """
    mu1, sigma1 = _gaussian(mu1, sigma1, "mu1", "sigma1")
    mu2, sigma2 = _gaussian(mu2, sigma2, "mu2", "sigma2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two Gaussians must have the same dimension, got {mu1.size} (mu1) and {mu2.size} (mu2)")
    root = _sqrtm_product(sigma1, sigma2)
    if root is None:
        warnings.warn(f"sqrtm(sigma1 @ sigma2) failed (near-singular covariances, e.g. fewer images than feature "
                      f"dimensions); retrying with {eps:g} added to both diagonals, as pytorch-fid does",
                      FIDWarning, stacklevel=2)
        offset = eps * np.eye(mu1.size)
        root = _sqrtm_product(sigma1 + offset, sigma2 + offset)
        if root is None:
            raise ValueError(f"sqrtm(sigma1 @ sigma2) failed even with {eps:g} added to both diagonals: are sigma1 "
                             "and sigma2 covariance matrices (positive semi-definite)?")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


class FeatureStatistics:
    """Running fp64 sums of features ``x`` [N, D] on their device: count n, ``sum x`` and ``sum x x^T``.

    ``mean_cov()`` gives ``mu = sum x / n`` and ``sigma = (sum x x^T - n mu mu^T) / (n - 1)`` (numpy fp64);
    ``all_reduce()`` sums the three over torch.distributed ranks in one collective, so ranks can each add
    the features of their own images.
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu"):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.num = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def add(self, features: torch.Tensor) -> None:
        """Add ``features`` [N, D] (any float dtype; summed in fp64 on this object's device)."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must be [N, {self.dim}], got {list(features.shape)}")
        x = features.to(device=self.sum.device, dtype=torch.float64)
        if not torch.isfinite(x).all():
            raise ValueError("features must be finite (the detector returned NaN or inf)")
        self.num += x.shape[0]
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def all_reduce(self) -> None:
        """Sum the statistics over all ranks (no-op unless torch.distributed is initialised)."""
        import torch.distributed as tdist

        if not (tdist.is_available() and tdist.is_initialized()) or tdist.get_world_size() == 1:
            return
        flat = torch.cat([torch.tensor([float(self.num)], dtype=torch.float64, device=self.sum.device), self.sum,
                          self.outer.reshape(-1)])
        tdist.all_reduce(flat)
        self.num = int(round(flat[0].item()))
        self.sum = flat[1:1 + self.dim].clone()
        self.outer = flat[1 + self.dim:].reshape(self.dim, self.dim).clone()

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu [D], sigma [D, D])`` as fp64 numpy arrays; needs at least 2 features."""
        if self.num < 2:
            raise ValueError(f"FID statistics need at least 2 images, got {self.num}")
        if self.num <= self.dim:
            warnings.warn(f"statistics of {self.num} images in {self.dim} feature dimensions: the covariance is "
                          f"singular and the FID biased upwards (the standard protocol uses 50,000 images)",
                          FIDWarning, stacklevel=2)
        mu = self.sum / self.num
        sigma = (self.outer - self.num * torch.outer(mu, mu)) / (self.num - 1)
        sigma = (sigma + sigma.T) / 2  # exact symmetry (the sums are symmetric up to round-off)
        return mu.cpu().numpy(), sigma.cpu().numpy()


def feature_statistics(features: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor], *,
                       dim: int, device: torch.device | str = "cpu", total: int | None = None,
                       progress: bool = True, desc: str = "features") -> FeatureStatistics:
    """Accumulate ``features(batch)`` over uint8 image batches, with a progress bar over ``total`` images."""
    from tqdm.auto import tqdm

    stats = FeatureStatistics(dim, device)
    with torch.no_grad(), tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for images in batches:
            stats.add(features(images))
            bar.update(images.shape[0])
    return stats


def save_statistics(path, mu, sigma, **extra) -> Path:
    """Write ``mu``, ``sigma`` (fp64) and the scalar ``extra`` fields to ``path`` (EDM's npz layout; atomic)."""
    from sidkernels.checkpoint.safetensors_io import _atomic_write

    mu, sigma = _gaussian(mu, sigma, "mu", "sigma")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a temporary name
            np.savez(f, mu=mu, sigma=sigma, **{k: np.asarray(v) for k, v in extra.items()})

    _atomic_write(path, write)
    return path


def load_statistics(path, *, name: str = "ref") -> tuple[np.ndarray, np.ndarray, dict]:
    """``(mu, sigma, extra)`` from an npz of EDM's layout; ``extra`` holds the other scalar fields (e.g.
    ``detector_sha256``).  Errors name the argument ``name``; pickled objects in the file are refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such statistics file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            fields = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:  # not an npz, or pickled objects in it
        raise ValueError(f"{name}: {path} is not an npz of FID statistics (mu, sigma): {err}") from None
    missing = [k for k in ("mu", "sigma") if k not in fields]
    if missing:
        raise ValueError(f"{name}: {path} has no {' or '.join(missing)} (FID statistics need 'mu' [D] and "
                         f"'sigma' [D, D], as in EDM's fid-refs/*.npz); found {sorted(fields)}")
    try:
        mu, sigma = _gaussian(fields.pop("mu"), fields.pop("sigma"), f"{name} mu", f"{name} sigma")
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name}: {path}: {err}") from None
    extra = {k: v.item() for k, v in fields.items() if v.ndim == 0}
    return mu, sigma, extra
