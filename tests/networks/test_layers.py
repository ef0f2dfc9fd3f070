"""Layers (docs/networks.md §2.1, §2.2): init, resampling convolutions, GroupNorm, noise embeddings."""
import math

import pytest
import torch
import torch.nn.functional as F

from sidkernels.networks.layers import (Conv2d, FourierEmbedding, GroupNorm, Linear, PositionalEmbedding,
                                        random_init, resample_kernel)


@pytest.mark.parametrize("mode, std", [
    ("xavier_uniform", math.sqrt(2 / (400 + 100))), ("xavier_normal", math.sqrt(2 / (400 + 100))),
    ("kaiming_uniform", math.sqrt(1 / 400)), ("kaiming_normal", math.sqrt(1 / 400)),
])
def test_random_init_scale(mode, std):
    w = random_init([100, 400], mode, fan_in=400, fan_out=100)
    assert w.std().item() == pytest.approx(std, rel=0.03)
    if mode.endswith("uniform"):
        assert w.abs().max().item() <= math.sqrt(3) * std


def test_random_init_rejects_unknown_mode():
    with pytest.raises(ValueError, match="init_mode must be one of"):
        random_init([2], "orthogonal", 1, 1)


def test_linear_zero_bias_and_dtype():
    lin = Linear(8, 4, init_bias=0.0)
    assert torch.equal(lin.bias, torch.zeros(4))
    x = torch.randn(3, 8, dtype=torch.float64)
    y = lin(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, x @ lin.weight.double().t())
    assert "bias" not in Linear(8, 4, bias=False).state_dict()


def test_resample_kernel_is_normalised_outer_product():
    f = resample_kernel([1, 3, 3, 1])
    assert f.shape == (1, 1, 4, 4)
    torch.testing.assert_close(f[0, 0], torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    torch.testing.assert_close(resample_kernel([1, 1]), torch.full((1, 1, 2, 2), 0.25))


@pytest.mark.parametrize("taps", [[1, 1], [1, 3, 3, 1]])
@pytest.mark.parametrize("kernel", [0, 1, 3])
def test_resampling_shapes_and_buffers(taps, kernel):
    x = torch.randn(2, 4, 8, 8)
    down = Conv2d(4, 4 if kernel == 0 else 6, kernel, down=True, resample_filter=taps)
    up = Conv2d(4, 4 if kernel == 0 else 6, kernel, up=True, resample_filter=taps)
    plain = Conv2d(4, 6, 3, resample_filter=taps)
    assert down(x).shape[2:] == (4, 4) and up(x).shape[2:] == (16, 16) and plain(x).shape[2:] == (8, 8)
    assert down.state_dict()["resample_filter"].shape == (1, 1, len(taps), len(taps))
    assert "resample_filter" not in plain.state_dict()
    assert ("weight" in down.state_dict()) == (kernel > 0)


def test_box_filter_fast_paths_equal_the_depthwise_convolutions():
    x = torch.randn(2, 5, 8, 8)
    for flag in ("down", "up"):
        fast = Conv2d(5, 7, 3, **{flag: True})
        generic = Conv2d(5, 7, 3, **{flag: True})
        generic.load_state_dict(fast.state_dict())
        generic.box_filter = False
        assert fast.box_filter
        torch.testing.assert_close(fast(x), generic(x), rtol=1e-5, atol=1e-6)


def test_box_down_is_average_pool_and_up_is_nearest():
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(Conv2d(3, 3, 0, down=True)(x), F.avg_pool2d(x, 2))
    up = Conv2d(3, 3, 0, up=True)(x)
    torch.testing.assert_close(up, x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    torch.testing.assert_close(Conv2d(3, 3, 0, down=True)(up), x)


def test_fused_down_filters_the_full_resolution_convolution():
    """NCSN++ fused down: the 3x3 conv at full resolution, then the stride-2 filter (away from the border,
    where the fused padding differs, it equals conv -> zero-padded filter)."""
    x = torch.randn(2, 3, 16, 16)
    fused = Conv2d(3, 5, 3, down=True, resample_filter=[1, 3, 3, 1], fused_resample=True, init_bias=1.0)
    full_res = F.conv2d(x, fused.weight, fused.bias, padding=1)
    expected = F.conv2d(full_res, resample_kernel([1, 3, 3, 1]).expand(5, 1, 4, 4), groups=5, stride=2, padding=1)
    out = fused(x)
    assert out.shape == (2, 5, 8, 8)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


def test_conv_argument_errors():
    with pytest.raises(ValueError, match="up and down"):
        Conv2d(2, 2, 3, up=True, down=True)
    with pytest.raises(ValueError, match="fused_resample"):
        Conv2d(2, 2, 3, up=True, fused_resample=True)


@pytest.mark.parametrize("channels, groups", [(128, 32), (64, 16), (12, 3), (256, 32)])
def test_groupnorm_groups(channels, groups):
    assert GroupNorm(channels).num_groups == groups


def test_groupnorm_keeps_bf16_under_autocast():
    norm = GroupNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 16, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x.bfloat16())
    assert y.dtype == torch.bfloat16
    expected = F.group_norm(x, 4, norm.weight, norm.bias, 1e-6)
    torch.testing.assert_close(y.float(), expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("endpoint", [False, True])
@pytest.mark.parametrize("sin_first", [False, True])
def test_positional_embedding(endpoint, sin_first):
    x = torch.randn(5)
    emb = PositionalEmbedding(8, endpoint=endpoint, sin_first=sin_first)(x)
    freqs = torch.tensor([(1e-4) ** (i / (4 - endpoint)) for i in range(4)])
    phase = x[:, None] * freqs
    parts = [phase.sin(), phase.cos()] if sin_first else [phase.cos(), phase.sin()]
    torch.testing.assert_close(emb, torch.cat(parts, dim=1))
    assert PositionalEmbedding(8).state_dict() == {}


def test_fourier_embedding():
    emb = FourierEmbedding(8)
    assert emb.state_dict()["freqs"].shape == (4,)
    assert 4 < emb.freqs.std() * 1.0  # N(0, 16^2) frequencies
    x = torch.randn(3)
    phase = 2 * math.pi * x[:, None] * emb.freqs
    torch.testing.assert_close(emb(x), torch.cat([phase.cos(), phase.sin()], dim=1), rtol=1e-5, atol=1e-5)
