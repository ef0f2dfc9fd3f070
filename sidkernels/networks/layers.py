"""Layers of the EDM networks (docs/networks.md §2.1, §2.2): weight init, Linear, Conv2d with resampling, GroupNorm and the
noise-level embeddings.

Parameter and buffer names, shapes and the None/persistent buffer pattern follow the official networks, so
their state dicts load with ``strict=True``.  Every layer casts its fp32 master weights to the activation
dtype on the fly (the official ``use_fp16`` recipe) and leaves the dtype choice to the caller or to autocast.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


def random_init(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    """Random initial values of ``shape`` (on the default device, so ``torch.device("meta")`` works).

    * ``xavier_uniform``: U(-a, a) with a = sqrt(6 / (fan_in + fan_out));
    * ``xavier_normal``: N(0, 2 / (fan_in + fan_out));
    * ``kaiming_uniform``: U(-a, a) with a = sqrt(3 / fan_in);
    * ``kaiming_normal``: N(0, 1 / fan_in).
    """
    out = torch.empty(tuple(shape))
    if mode == "xavier_uniform":
        a = math.sqrt(6 / (fan_in + fan_out))
        return out.uniform_(-a, a)
    if mode == "xavier_normal":
        return out.normal_(0, math.sqrt(2 / (fan_in + fan_out)))
    if mode == "kaiming_uniform":
        a = math.sqrt(3 / fan_in)
        return out.uniform_(-a, a)
    if mode == "kaiming_normal":
        return out.normal_(0, math.sqrt(1 / fan_in))
    raise ValueError(f"init_mode must be one of {INIT_MODES}, got {mode!r}")


def _init(scale: float, shape, mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    return random_init(shape, mode, fan_in, fan_out) * scale


def without_autocast(device_type: str):
    """Context that turns autocast off, for the few ops whose dtype the network decides itself."""
    return torch.autocast(device_type=device_type, enabled=False)


class Linear(nn.Module):
    """``y = x W^T + b`` with ``W: [out_features, in_features]``; the weight scale is ``init_weight`` times
    the ``init_mode`` distribution, the bias scale ``init_bias`` times the same distribution."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init_mode: str = "kaiming_normal",
                 init_weight: float = 1.0, init_bias: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(_init(init_weight, [out_features, in_features], **fans))
        self.bias = nn.Parameter(_init(init_bias, [out_features], **fans)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


def resample_kernel(taps: Sequence[float]) -> torch.Tensor:
    """The 2-D resampling filter ``f f^T / (sum f)^2`` as a ``[1, 1, k, k]`` fp32 tensor."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    return (torch.outer(f, f) / f.sum().square()).reshape(1, 1, len(f), len(f))


class Conv2d(nn.Module):
    """2-D convolution with optional 2x up- or down-sampling by a separable FIR filter.

    * down: depthwise conv with the filter ``f`` (stride 2, padding ``(len f - 1) // 2``), then the weight conv.
    * up: depthwise transposed conv with ``4 f`` (stride 2, same padding), then the weight conv.
    * ``fused_resample`` (down only, NCSN++ ``aux_residual``): the weight conv first, padded by
      ``k // 2 + (len f - 1) // 2``, then the unpadded stride-2 filter on the output channels.
    * ``kernel = 0``: resampling only, no weight and no bias.

    The weight conv is padded by ``kernel // 2``.  The buffer ``resample_filter`` exists (and is saved) only
    when resampling; it is a constant fixed by the constructor's ``resample_filter`` taps.  A two-tap filter
    ``[a, a]`` is the 2x2 box, for which down is an average pool and up is nearest-neighbour upsampling;
    those exact equivalents run as ``avg_pool2d`` / ``interpolate`` instead of depthwise convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, up: bool = False,
                 down: bool = False, resample_filter: Sequence[float] = (1, 1), fused_resample: bool = False,
                 init_mode: str = "kaiming_normal", init_weight: float = 1.0, init_bias: float = 0.0):
        super().__init__()
        if up and down:
            raise ValueError("Conv2d: up and down cannot both be set")
        if fused_resample and up:
            raise ValueError("Conv2d: fused_resample is only defined for down-sampling (NCSN++ aux_residual)")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        self.fused_resample = fused_resample
        fans = dict(mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel)
        self.weight = nn.Parameter(_init(init_weight, [out_channels, in_channels, kernel, kernel], **fans)) \
            if kernel else None
        self.bias = nn.Parameter(_init(init_bias, [out_channels], **fans)) if kernel and bias else None
        taps = list(resample_filter)
        self.register_buffer("resample_filter", resample_kernel(taps) if up or down else None)
        self.box_filter = len(taps) == 2 and taps[0] == taps[1]
        self.filter_pad = (len(taps) - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) if self.weight is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        if self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w.shape[-1] // 2 + self.filter_pad)
            x = self._downsample(x, padding=0)
            return x if b is None else x + b.reshape(1, -1, 1, 1)
        if self.up:
            x = self._upsample(x)
        if self.down:
            x = self._downsample(x, padding=self.filter_pad)
        if w is not None:
            x = F.conv2d(x, w, b, padding=w.shape[-1] // 2)
        return x

    def _downsample(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        if self.box_filter:
            return F.avg_pool2d(x, 2)
        c = x.shape[1]
        f = self.resample_filter.to(x.dtype).expand(c, 1, -1, -1)
        return F.conv2d(x, f, groups=c, stride=2, padding=padding)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.box_filter:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        c = x.shape[1]
        f = (self.resample_filter * 4).to(x.dtype).expand(c, 1, -1, -1)
        return F.conv_transpose2d(x, f, groups=c, stride=2, padding=self.filter_pad)


class GroupNorm(nn.Module):
    """Group normalisation with ``min(num_groups, num_channels // min_channels_per_group)`` groups.

    The output keeps the input dtype (statistics accumulate in fp32 inside the kernel), as in the official
    fp16 recipe; under autocast this opts out of autocast's fp32 ``group_norm`` policy so bf16 activations
    stay bf16.
    """

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4,
                 eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with without_autocast(x.device.type):
            return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def _cos_sin(phase: torch.Tensor, sin_first: bool) -> torch.Tensor:
    parts = [phase.sin(), phase.cos()] if sin_first else [phase.cos(), phase.sin()]
    return torch.cat(parts, dim=1)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a per-sample scalar ``x`` ([N]) into ``num_channels`` features.

    ``f_i = (1 / max_positions) ** (i / (C/2 - endpoint))`` for ``i < C/2``; output ``[cos(x f), sin(x f)]``,
    or ``[sin(x f), cos(x f)]`` with ``sin_first`` (the order SongUNet uses).  No parameters.
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False,
                 sin_first: bool = False):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint
        self.sin_first = sin_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        exponent = torch.arange(half, dtype=torch.float32, device=x.device) / (half - int(self.endpoint))
        freqs = (1.0 / self.max_positions) ** exponent
        return _cos_sin(torch.outer(x, freqs.to(x.dtype)), self.sin_first)


class FourierEmbedding(nn.Module):
    """Random Fourier features of ``x`` ([N]): buffer ``freqs ~ N(0, scale^2)`` of size C/2, output
    ``[cos(2 pi f x), sin(2 pi f x)]`` (or sin first, as SongUNet uses it)."""

    def __init__(self, num_channels: int, scale: float = 16.0, sin_first: bool = False):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)
        self.sin_first = sin_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cos_sin(torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype)), self.sin_first)
