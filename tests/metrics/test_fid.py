"""frechet_distance against closed forms and an independent square root; statistics and their npz files."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from sidkernels.metrics.fid import (FeatureStatistics, FIDWarning, SQRTM_EPS, frechet_distance, load_statistics,
                                    save_statistics)


def random_spd(rng, d, rank=None):
    a = rng.standard_normal((rank or 2 * d, d))
    return a.T @ a / a.shape[0]


def trace_sqrt_product(s1, s2):
    """tr((S1 S2)^(1/2)) as tr((S1^(1/2) S2 S1^(1/2))^(1/2)), both roots from symmetric eigendecompositions
    (independent of scipy.linalg.sqrtm of the non-symmetric product that frechet_distance takes)."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root @ s2 @ root
    return np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()


def independent_fid(mu1, s1, mu2, s2):
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2))


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(0)
    d = 40
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_one_dimensional_gaussians():
    # W2^2 between N(m1, a^2) and N(m2, b^2) is (m1 - m2)^2 + (a - b)^2
    assert frechet_distance([1.5], [[4.0]], [-0.5], [[0.25]]) == pytest.approx(2.0 ** 2 + 1.5 ** 2, rel=1e-12)


def test_full_covariance_matches_an_independent_square_root():
    rng = np.random.default_rng(1)
    d = 48
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.1
    s1, s2 = random_spd(rng, d), random_spd(rng, d) + 0.3 * np.eye(d)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(independent_fid(mu1, s1, mu2, s2), rel=1e-9)
    # rotating both Gaussians by the same orthogonal map leaves the distance unchanged
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    assert frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T) == pytest.approx(got, rel=1e-9)


def test_symmetric_and_zero_for_identical_statistics():
    rng = np.random.default_rng(2)
    d = 32
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-10)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9 * np.trace(s1)
    assert frechet_distance(mu1, s1, mu2, s2) > 0.1


def test_fewer_images_than_dimensions():
    """Rank-deficient covariances (n < D): the root of the product still succeeds (no offset, no warning from
    frechet_distance), the value matches the independent root, and the statistics warn that they are
    singular."""
    rng = np.random.default_rng(3)
    d, n = 64, 20
    stats = []
    for shift in (0.0, 0.4):
        s = FeatureStatistics(d)
        s.add(torch.from_numpy(rng.standard_normal((n, d)) + shift))
        with pytest.warns(FIDWarning, match="20 images in 64 feature dimensions"):
            stats.append(s.mean_cov())
    (mu1, s1), (mu2, s2) = stats
    assert np.linalg.matrix_rank(s1) == n - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", FIDWarning)
        got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(independent_fid(mu1, s1, mu2, s2), abs=1e-5)


def test_failed_square_root_retries_with_the_diagonal_offset(monkeypatch):
    """pytorch-fid's fix: when sqrtm of the product fails (non-finite, or a large imaginary diagonal), eps is
    added to both diagonals and the root retaken, with a warning; the trace terms keep the unshifted
    covariances.  The failure is injected (scipy 1.17 returns finite roots for singular PSD products)."""
    rng = np.random.default_rng(4)
    d = 16
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d, rank=5), random_spd(rng, d, rank=7)
    real_sqrtm = scipy.linalg.sqrtm
    calls = []

    def failing_once(a):
        calls.append(a)
        if len(calls) == 1:
            return np.full_like(a, np.nan)
        return real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", failing_once)
    with pytest.warns(FIDWarning, match="retrying with 1e-06 added to both diagonals"):
        got = frechet_distance(mu1, s1, mu2, s2)
    eye = SQRTM_EPS * np.eye(d)
    np.testing.assert_allclose(calls[1], (s1 + eye) @ (s2 + eye))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1 + eye, s2 + eye)
    assert got == pytest.approx(expected, rel=1e-8)

    def complex_root(a):  # an imaginary diagonal beyond round-off, both times
        return real_sqrtm(a) + 0.5j * np.eye(len(a))

    monkeypatch.setattr(scipy.linalg, "sqrtm", complex_root)
    with pytest.warns(FIDWarning), pytest.raises(ValueError, match="failed even with 1e-06"):
        frechet_distance(mu1, s1, mu2, s2)


def test_bad_gaussians_are_refused_by_name():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="sigma2 must be"):
        frechet_distance(mu, s, mu, np.eye(4))
    with pytest.raises(ValueError, match="same dimension"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="mu1 and sigma1 must be finite"):
        frechet_distance([0, np.nan, 0], s, mu, s)
    with pytest.raises(ValueError, match="sigma1 must be symmetric"):
        frechet_distance(mu, np.triu(np.ones((3, 3))), mu, s)
    with pytest.raises(ValueError, match="mu1 must be a non-empty vector"):
        frechet_distance(np.zeros((3, 1)), s, mu, s)


def test_feature_statistics_match_numpy_mean_and_covariance():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 12)) * rng.uniform(0.1, 4, 12) + rng.standard_normal(12)
    stats = FeatureStatistics(12)
    for chunk in np.array_split(x, 3):
        stats.add(torch.from_numpy(chunk).float())
    mu, sigma = stats.mean_cov()
    x32 = x.astype(np.float32).astype(np.float64)  # the features were passed in fp32
    assert mu.dtype == sigma.dtype == np.float64 and stats.num == 500
    np.testing.assert_allclose(mu, x32.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x32, rowvar=False), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"features must be \[N, 12\]"):
        stats.add(torch.zeros(4, 11))
    with pytest.raises(ValueError, match="features must be finite"):
        stats.add(torch.full((2, 12), float("nan")))
    with pytest.raises(ValueError, match="at least 2 images"):
        FeatureStatistics(12).mean_cov()


def test_statistics_files_round_trip_and_read_edm_layout(tmp_path):
    rng = np.random.default_rng(6)
    mu, sigma = rng.standard_normal(8), random_spd(rng, 8)
    path = save_statistics(tmp_path / "sub" / "ref.npz", mu, sigma, num_images=123, detector_sha256="ab" * 32)
    with np.load(path) as f:  # what EDM's reader does
        assert f["mu"].dtype == f["sigma"].dtype == np.float64
        np.testing.assert_array_equal(f["mu"], mu)
    got_mu, got_sigma, extra = load_statistics(path)
    np.testing.assert_array_equal(got_sigma, sigma)
    assert extra == {"num_images": 123, "detector_sha256": "ab" * 32}
    assert not list(path.parent.glob("*.tmp"))
    edm = tmp_path / "cifar10-32x32.npz"  # an EDM fid-refs file holds exactly mu and sigma
    np.savez(edm, mu=mu.astype(np.float32), sigma=sigma)
    got_mu, _, extra = load_statistics(edm)
    assert got_mu.dtype == np.float64 and extra == {}


def test_bad_statistics_files_name_the_argument(tmp_path):
    np.savez(tmp_path / "no-sigma.npz", mu=np.zeros(4))
    with pytest.raises(ValueError, match="--ref: .* has no sigma"):
        load_statistics(tmp_path / "no-sigma.npz", name="--ref")
    np.savez(tmp_path / "pickled.npz", mu=np.zeros(2), sigma=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="ref: .* is not an npz of FID statistics"):
        load_statistics(tmp_path / "pickled.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="is not an npz"):
        load_statistics(tmp_path / "text.npz")
    np.savez(tmp_path / "shape.npz", mu=np.zeros(4), sigma=np.eye(3))
    with pytest.raises(ValueError, match=r"ref sigma must be \[D, D\]"):
        load_statistics(tmp_path / "shape.npz")
    with pytest.raises(FileNotFoundError, match="fid_ref: no such statistics file"):
        load_statistics(tmp_path / "missing.npz", name="fid_ref")
