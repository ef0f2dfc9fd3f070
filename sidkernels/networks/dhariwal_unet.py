"""DhariwalUNet: the ADM U-Net of Dhariwal & Nichol as used by EDM (docs/networks.md §3.2, ImageNet 64).

Mapping network (fp32, outside autocast)::

    emb = silu(map_layer0(pos(c_noise) + map_augment(augment_labels)))     # pos: [cos, sin], no endpoint
    emb = silu(map_layer1(emb) + map_label(onehot))                         # map_label has no bias

Blocks use adaptive scale/shift, ``skip_scale = 1``, GroupNorm eps 1e-5 and ``out_channels //
channels_per_head`` heads.  Encoder per level: a 3x3 conv (level 0) or a down-block, then ``num_blocks``
blocks; every output is a skip.  Decoder: ``in0`` (attention) and ``in1`` at the lowest level, an up-block
elsewhere, then ``num_blocks + 1`` blocks on ``cat([x, skip])``; attention wherever ``res`` is in
``attn_resolutions``.  Output: GroupNorm -> silu -> 3x3 conv (zero init).  Init: kaiming_uniform scaled by
sqrt(1/3) (weights and biases); conv1, proj, out_conv and map_augment start at zero.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sidkernels.networks.discriminator import bottleneck_logits, check_output
from sidkernels.networks.layers import Conv2d, GroupNorm, Linear, PositionalEmbedding
from sidkernels.networks.mapping import check_unet_inputs, drop_labels, mapping_precision
from sidkernels.networks.unet_block import UNetBlock


class DhariwalUNet(nn.Module):
    """ADM U-Net.  Arguments and defaults are the official ones; ``channels_per_head`` (official: fixed at 64)
    and ``attention_impl`` are ours.  ``forward(x, noise_labels, class_labels=None, augment_labels=None,
    output="decoder")`` returns F in the activation dtype (``output``: :mod:`sidkernels.networks.discriminator`)."""

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 augment_dim: int = 0, model_channels: int = 192, channel_mult: Sequence[int] = (1, 2, 3, 4),
                 channel_mult_emb: int = 4, num_blocks: int = 3, attn_resolutions: Sequence[int] = (32, 16, 8),
                 dropout: float = 0.10, label_dropout: float = 0.0, channels_per_head: int = 64,
                 attention_impl: str = "sdpa"):
        super().__init__()
        self.img_resolution = img_resolution
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.label_dim = label_dim
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        init = dict(init_mode="kaiming_uniform", init_weight=math.sqrt(1 / 3), init_bias=math.sqrt(1 / 3))
        init_zero = dict(init_mode="kaiming_uniform", init_weight=0.0, init_bias=0.0)
        block = dict(emb_channels=emb_channels, channels_per_head=channels_per_head, dropout=dropout, init=init,
                     init_zero=init_zero, attention_impl=attention_impl)

        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False, **init_zero) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)
        self.map_label = Linear(label_dim, emb_channels, bias=False, init_mode="kaiming_normal",
                                init_weight=math.sqrt(label_dim)) if label_dim else None

        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, kernel=3, **init)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                attn = res in attn_resolutions
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block)
        skips = [m.out_channels for m in self.enc.values()]

        self.dec = nn.ModuleDict()
        self._concat_blocks = set()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                name = f"{res}x{res}_block{idx}"
                self.dec[name] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
                self._concat_blocks.add(name)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, kernel=3, **init_zero)

    def embedding(self, noise_labels: torch.Tensor, class_labels, augment_labels) -> torch.Tensor:
        """The fp32 embedding vector ``[N or 1, emb_channels]`` fed to every block."""
        with mapping_precision(noise_labels):
            emb = self.map_noise(noise_labels.float())
            if self.map_augment is not None and augment_labels is not None:
                emb = emb + self.map_augment(augment_labels.to(emb.dtype))
            emb = self.map_layer1(F.silu(self.map_layer0(emb)))
            if self.map_label is not None:
                labels = drop_labels(class_labels.to(emb.dtype), self.label_dropout, self.training)
                emb = emb + self.map_label(labels)
            return F.silu(emb)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None, output: str = "decoder"):
        check_output(output)
        check_unet_inputs(self, x, noise_labels, class_labels, augment_labels,
                          self.map_augment.in_features if self.map_augment is not None else 0)
        emb = self.embedding(noise_labels, class_labels, augment_labels)
        skips = []
        for layer in self.enc.values():
            x = layer(x, emb) if isinstance(layer, UNetBlock) else layer(x)
            skips.append(x)
        if output == "encoder":
            return bottleneck_logits(x)
        logits = bottleneck_logits(x) if output == "both" else None
        for name, layer in self.dec.items():
            if name in self._concat_blocks:
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x, emb)
        out = self.out_conv(F.silu(self.out_norm(x)))
        return out if logits is None else (out, logits)
