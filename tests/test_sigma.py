"""Sigma samplers against their closed forms (docs/sid.md §1.2)."""
import math

import pytest
import torch

import sidkernels as sk


def test_sid_sampler_range_and_quantiles():
    s = sk.sample_sigma_sid(200_000, dtype=torch.float64)
    assert s.shape == (200_000,) and s.dtype == torch.float64
    assert s.min() >= 0.002 - 1e-12 and s.max() < 24.42
    # closed-form CDF: sigma <= t  <=>  u <= 1 - (t^(1/7) - 80^(1/7)) / (0.002^(1/7) - 80^(1/7)), u ~ U[0, 0.8)
    lo, hi = 0.002 ** (1 / 7), 80 ** (1 / 7)
    for t, p_spec in ((0.1, 0.26), (0.96, 0.5), (2.5, 0.62)):
        p = (1 - (t ** (1 / 7) - hi) / (lo - hi)) / 0.8
        assert abs(p - p_spec) < 0.01  # docs/sid.md §1.2: median ~0.96, P(sigma > 2.5) ~0.38, P(sigma < 0.1) ~0.26
        assert abs((s <= t).double().mean().item() - p) < 0.005
    assert abs(s.median().item() - 0.96) < 0.03


def test_sid_sampler_tmax():
    top = (80 ** (1 / 7) + 0.4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert sk.sample_sigma_sid(10_000, tmax=600).max() <= top + 1e-4
    assert abs(top - 5.84) < 0.01


def test_lognormal_sampler():
    s = sk.sample_sigma_lognormal(200_000)
    logs = s.double().log()
    assert abs(logs.mean().item() + 1.2) < 0.01 and abs(logs.std().item() - 1.2) < 0.01
    assert abs(s.median().item() - math.exp(-1.2)) < 0.01


def test_generator_and_device_arguments():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(sk.sample_sigma_sid(5, generator=g1), sk.sample_sigma_sid(5, generator=g2))
    assert sk.sample_sigma_lognormal(4, device="meta").device.type == "meta"


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=2, tmax=0), dict(n=2, tmax=1200), dict(n=2.5)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        sk.sample_sigma_sid(**bad)
    with pytest.raises(ValueError, match="p_std"):
        sk.sample_sigma_lognormal(3, p_std=0)
