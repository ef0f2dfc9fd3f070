"""The residual U-Net block shared by DDPM++, NCSN++ and ADM (docs/networks.md §2.3).

With input ``x`` and embedding ``emb``::

    h = conv0(silu(norm0(x)))                      # 3x3, with the block's up/down-sampling
    p = affine(emb)                                 # per-channel, cast to h's dtype
    h = silu(shift + norm1(h) * (scale + 1))        # adaptive_scale (ADM), (scale, shift) = chunk(p, 2)
    h = silu(norm1(h + p))                          # otherwise (SongUNet)
    h = conv1(dropout(h))                           # 3x3, (near-)zero init
    x = (h + skip(x)) * skip_scale                  # skip: resampling 1x1 conv when the shape changes
    x = (proj(attention(qkv(norm2(x)))) + x) * skip_scale      # only with attention
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sidkernels.networks.attention import (attention_reference, attention_sdpa, check_attention_impl,
                                           qkv_by_projection)
from sidkernels.networks.layers import Conv2d, GroupNorm, Linear


class UNetBlock(nn.Module):
    """Residual block; submodule names (``norm0 conv0 affine norm1 conv1 skip norm2 qkv proj``) and the
    plain attributes (``in_channels out_channels emb_channels num_heads dropout skip_scale adaptive_scale``)
    are those of the official block.

    ``num_heads`` is 0 without attention, else ``num_heads`` or ``out_channels // channels_per_head``.
    ``init``/``init_zero``/``init_attn`` are keyword dicts for the layers (``init_mode``, ``init_weight``,
    ``init_bias``): ``init`` for conv0/affine/skip, ``init_zero`` for conv1/proj, ``init_attn`` for qkv
    (defaults to ``init``).  ``attention_impl`` picks ``"sdpa"`` or the fp32-softmax ``"reference"``.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, up: bool = False,
                 down: bool = False, attention: bool = False, num_heads: int | None = None,
                 channels_per_head: int = 64, dropout: float = 0.0, skip_scale: float = 1.0, eps: float = 1e-5,
                 resample_filter: Sequence[float] = (1, 1), resample_proj: bool = False,
                 adaptive_scale: bool = True, init: dict | None = None, init_zero: dict | None = None,
                 init_attn: dict | None = None, attention_impl: str = "sdpa"):
        super().__init__()
        init = dict(init or {})
        init_zero = dict(init_weight=0.0) if init_zero is None else dict(init_zero)
        init_attn = init if init_attn is None else dict(init_attn)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.emb_channels = emb_channels
        self.num_heads = 0 if not attention else num_heads if num_heads is not None \
            else out_channels // channels_per_head
        self.dropout = dropout
        self.skip_scale = float(skip_scale)
        self.adaptive_scale = adaptive_scale
        self.attention_impl = check_attention_impl(attention_impl)
        resample = dict(up=up, down=down, resample_filter=resample_filter)

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, **resample, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel=kernel, **resample, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, kernel=1, **init_attn)
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(h.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        else:
            h = F.silu(self.norm1(h + params))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        x = (h + (self.skip(x) if self.skip is not None else x)) * self.skip_scale
        if self.num_heads:
            x = (self.proj(self._attend(self.norm2(x))) + x) * self.skip_scale
        return x

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        if self.attention_impl == "reference":
            return attention_reference(self.qkv(x), self.num_heads)
        w, b = qkv_by_projection(self.qkv.weight, self.qkv.bias, self.num_heads)
        a = attention_sdpa(F.conv2d(x, w.to(x.dtype), b.to(x.dtype) if b is not None else None), self.num_heads)
        return a if x.is_contiguous(memory_format=torch.channels_last) else a.contiguous()
