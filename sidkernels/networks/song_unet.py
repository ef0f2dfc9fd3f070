"""SongUNet: the DDPM++ / NCSN++ U-Net of Song et al. as used by EDM (docs/networks.md §3.1).

Mapping network (run in fp32, outside autocast)::

    emb = noise_embedding(c_noise)                  # [sin, cos] order
    emb += map_label(onehot * sqrt(label_dim))      # conditional nets
    emb += map_augment(augment_labels)              # when augment_dim > 0 and labels are given (no bias)
    emb = silu(map_layer1(silu(map_layer0(emb))))

Encoder, per level ``l`` at resolution ``res = img_resolution >> l``: a 3x3 conv (level 0) or a down-block,
the optional NCSN++ input-pyramid branches, then ``num_blocks`` blocks (attention when ``res`` is in
``attn_resolutions``).  Every output except the pyramid branches is kept as a skip.  Decoder, from the lowest
level up: ``in0`` (attention) and ``in1`` at the lowest level, an up-block elsewhere, then ``num_blocks + 1``
blocks that take ``cat([x, skip])`` (attention on the last one when ``res`` is in ``attn_resolutions``),
then GroupNorm -> silu -> 3x3 conv output heads (at level 0 only for the standard decoder).

The ``enc``/``dec`` ModuleDict keys (``32x32_conv``, ``16x16_down``, ``16x16_block0``, ``8x8_in0``,
``32x32_aux_conv``, ...) are the official ones, so official state dicts load unchanged.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sidkernels.networks.discriminator import bottleneck_logits, check_output
from sidkernels.networks.layers import Conv2d, FourierEmbedding, GroupNorm, Linear, PositionalEmbedding
from sidkernels.networks.mapping import check_unet_inputs, drop_labels, mapping_precision
from sidkernels.networks.unet_block import UNetBlock

EMBEDDING_TYPES = ("positional", "fourier")
ENCODER_TYPES = ("standard", "skip", "residual")
DECODER_TYPES = ("standard", "skip")


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


class SongUNet(nn.Module):
    """DDPM++ (``embedding_type="positional"``, standard encoder, filter [1,1], ``channel_mult_noise=1``) and
    NCSN++ (``"fourier"``, ``encoder_type="residual"``, filter [1,3,3,1], ``channel_mult_noise=2``).

    Arguments and defaults are the official ones; ``attention_impl`` (``"sdpa"`` or ``"reference"``) is ours.
    ``forward(x, noise_labels, class_labels=None, augment_labels=None, output="decoder")`` returns the raw
    network output F in the activation dtype (``output``: :mod:`sidkernels.networks.discriminator`).
    """

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 augment_dim: int = 0, model_channels: int = 128, channel_mult: Sequence[int] = (1, 2, 2, 2),
                 channel_mult_emb: int = 4, num_blocks: int = 4, attn_resolutions: Sequence[int] = (16,),
                 dropout: float = 0.10, label_dropout: float = 0.0, embedding_type: str = "positional",
                 channel_mult_noise: int = 1, encoder_type: str = "standard", decoder_type: str = "standard",
                 resample_filter: Sequence[float] = (1, 1), attention_impl: str = "sdpa"):
        super().__init__()
        _choice("embedding_type", embedding_type, EMBEDDING_TYPES)
        _choice("encoder_type", encoder_type, ENCODER_TYPES)
        _choice("decoder_type", decoder_type, DECODER_TYPES)
        self.img_resolution = img_resolution
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.label_dim = label_dim
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        init_attn = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))
        block = dict(emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
                     resample_filter=resample_filter, resample_proj=True, adaptive_scale=False, init=init,
                     init_zero=init_zero, init_attn=init_attn, attention_impl=attention_impl)

        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True, sin_first=True)
        else:
            self.map_noise = FourierEmbedding(noise_channels, sin_first=True)
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False, **init) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        # Encoder; roles drive forward(): "conv", "block", "aux_down", "aux_skip", "aux_residual".
        self.enc = nn.ModuleDict()
        self._enc_roles = {}
        add_enc = functools.partial(self._add, self.enc, self._enc_roles)
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                add_enc(f"{res}x{res}_conv", "conv", Conv2d(cin, cout, kernel=3, **init))
            else:
                add_enc(f"{res}x{res}_down", "block", UNetBlock(cout, cout, down=True, **block))
                if encoder_type == "skip":
                    add_enc(f"{res}x{res}_aux_down", "aux_down",
                            Conv2d(caux, caux, kernel=0, down=True, resample_filter=resample_filter))
                    add_enc(f"{res}x{res}_aux_skip", "aux_skip", Conv2d(caux, cout, kernel=1, **init))
                if encoder_type == "residual":
                    add_enc(f"{res}x{res}_aux_residual", "aux_residual",
                            Conv2d(caux, cout, kernel=3, down=True, resample_filter=resample_filter,
                                   fused_resample=True, **init))
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                add_enc(f"{res}x{res}_block{idx}", "block",
                        UNetBlock(cin, cout, attention=res in attn_resolutions, **block))
        skips = [m.out_channels for name, m in self.enc.items() if not self._enc_roles[name].startswith("aux")]

        # Decoder; roles: "block", "block_cat" (concatenates a skip first), "aux_up", "aux_norm", "aux_conv".
        self.dec = nn.ModuleDict()
        self._dec_roles = {}
        add_dec = functools.partial(self._add, self.dec, self._dec_roles)
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                add_dec(f"{res}x{res}_in0", "block", UNetBlock(cout, cout, attention=True, **block))
                add_dec(f"{res}x{res}_in1", "block", UNetBlock(cout, cout, **block))
            else:
                add_dec(f"{res}x{res}_up", "block", UNetBlock(cout, cout, up=True, **block))
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                add_dec(f"{res}x{res}_block{idx}", "block_cat", UNetBlock(cin, cout, attention=attn, **block))
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    add_dec(f"{res}x{res}_aux_up", "aux_up",
                            Conv2d(out_channels, out_channels, kernel=0, up=True, resample_filter=resample_filter))
                add_dec(f"{res}x{res}_aux_norm", "aux_norm", GroupNorm(cout, eps=1e-6))
                add_dec(f"{res}x{res}_aux_conv", "aux_conv", Conv2d(cout, out_channels, kernel=3, **init_zero))

    @staticmethod
    def _add(modules: nn.ModuleDict, roles: dict, name: str, role: str, module: nn.Module) -> None:
        modules[name] = module
        roles[name] = role

    def embedding(self, noise_labels: torch.Tensor, class_labels, augment_labels) -> torch.Tensor:
        """The fp32 embedding vector ``[N or 1, emb_channels]`` fed to every block."""
        with mapping_precision(noise_labels):
            emb = self.map_noise(noise_labels.float())
            if self.map_label is not None:
                labels = drop_labels(class_labels.to(emb.dtype), self.label_dropout, self.training)
                emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
            if self.map_augment is not None and augment_labels is not None:
                emb = emb + self.map_augment(augment_labels.to(emb.dtype))
            emb = F.silu(self.map_layer0(emb))
            return F.silu(self.map_layer1(emb))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None, output: str = "decoder"):
        check_output(output)
        check_unet_inputs(self, x, noise_labels, class_labels, augment_labels,
                          self.map_augment.in_features if self.map_augment is not None else 0)
        emb = self.embedding(noise_labels, class_labels, augment_labels)

        skips = []
        aux = x
        for name, layer in self.enc.items():
            role = self._enc_roles[name]
            if role == "aux_down":
                aux = layer(aux)
            elif role == "aux_skip":
                x = skips[-1] = x + layer(aux)
            elif role == "aux_residual":
                x = skips[-1] = aux = (x + layer(aux)) / math.sqrt(2)
            else:
                x = layer(x) if role == "conv" else layer(x, emb)
                skips.append(x)
        if output == "encoder":
            return bottleneck_logits(x)
        logits = bottleneck_logits(x) if output == "both" else None

        out = None
        head = None
        for name, layer in self.dec.items():
            role = self._dec_roles[name]
            if role == "aux_up":
                out = layer(out)
            elif role == "aux_norm":
                head = layer(x)
            elif role == "aux_conv":
                head = layer(F.silu(head))
                out = head if out is None else head + out
            else:
                if role == "block_cat":
                    x = torch.cat([x, skips.pop()], dim=1)
                x = layer(x, emb)
        return out if logits is None else (out, logits)
