"""Helpers shared by the U-Nets' mapping (embedding) networks and input checks."""
from __future__ import annotations

import torch

from sidkernels.networks.layers import without_autocast


def mapping_precision(noise_labels: torch.Tensor):
    """The embedding MLP runs in fp32 (docs/networks.md §2.5): autocast is off inside, inputs are fp32."""
    return without_autocast(noise_labels.device.type)


def drop_labels(labels: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Classifier-free-guidance label dropout: zero each sample's label vector with probability ``p``."""
    if not (training and p):
        return labels
    keep = torch.rand([labels.shape[0], 1], device=labels.device) >= p
    return labels * keep.to(labels.dtype)


def _rows(name: str, t: torch.Tensor, n: int, width: int) -> None:
    if t.dim() != 2 or t.shape[1] != width or t.shape[0] not in (1, n):
        raise ValueError(f"{name} must have shape [{n}, {width}] (or [1, {width}]), got {tuple(t.shape)}")


def check_unet_inputs(net, x: torch.Tensor, noise_labels: torch.Tensor, class_labels, augment_labels,
                      augment_dim: int) -> None:
    """Shape checks with the argument's name; all static (free under ``torch.compile``)."""
    r = net.img_resolution
    if x.dim() != 4 or x.shape[1] != net.in_channels or x.shape[2] != r or x.shape[3] != r:
        raise ValueError(f"x must have shape [N, {net.in_channels}, {r}, {r}], got {tuple(x.shape)}")
    n = x.shape[0]
    if noise_labels.dim() != 1 or noise_labels.shape[0] not in (1, n):
        raise ValueError(f"noise_labels must have shape [{n}] (or [1]), got {tuple(noise_labels.shape)}")
    if net.label_dim:
        if class_labels is None:
            raise ValueError(f"class_labels are required: the network is class-conditional "
                             f"(label_dim={net.label_dim}); pass one-hot labels [N, {net.label_dim}]")
        _rows("class_labels", class_labels, n, net.label_dim)
    if augment_dim and augment_labels is not None:
        _rows("augment_labels", augment_labels, n, augment_dim)
