"""SiDA's discriminator head (docs/sid.md §4.1): no new parameters.  The fake-score network's deepest encoder
feature map h ``[N, C, r, r]`` (``r = img_resolution >> (levels - 1)``, 8x8 for CIFAR-10) averaged over its
channels is a map of real/fake logits::

    logits = mean_c h[:, c]          # [N, 1, r, r], in the activation dtype

A U-Net's ``output`` argument picks what it returns: ``"decoder"`` (F, the default), ``"encoder"`` (the logits
only; the decoder is skipped) or ``"both"`` (``(F, logits)`` from one pass).
"""
from __future__ import annotations

import torch

OUTPUTS = ("decoder", "encoder", "both")


def check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def bottleneck_logits(h: torch.Tensor) -> torch.Tensor:
    """The logit map ``[N, 1, r, r]`` of the deepest encoder features ``h [N, C, r, r]``."""
    return h.mean(dim=1, keepdim=True)
