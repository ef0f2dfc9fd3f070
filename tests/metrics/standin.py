"""Stand-ins for FID tests: a small TorchScript detector with the calling convention of
``inception-2015-12-05.pt`` (uint8 ``[N, 3, H, W]``, resized inside, ``return_features=True`` -> float features
``[N, D]``; here D = 64 non-negative pool features of a fixed random two-layer convolutional network), and a
tiny one-step generator of the CIFAR-10 preset's architecture at 8x8."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

STANDIN_DIM = 64
STANDIN_SIZE = 16  # the resolution it resizes to (the real one: 299)


class StandInDetector(torch.nn.Module):
    def __init__(self, dim: int = STANDIN_DIM, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(16, dim, 3, padding=1)
        self.fc = torch.nn.Linear(dim, 10)
        self.size = STANDIN_SIZE
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        features = x.mean(dim=(2, 3))
        return features if return_features else self.fc(features)


class NoFeaturesKeyword(torch.nn.Module):
    """A TorchScript module without the detector's ``return_features`` keyword."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img.to(torch.float32).mean(dim=(2, 3))


class FeatureMaps(torch.nn.Module):
    """A TorchScript module that takes the keyword but returns feature maps [N, C, H, W], not vectors."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return img.to(torch.float32)


def save_torchscript(module: torch.nn.Module, path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script/save are deprecated in torch 2.13
        torch.jit.save(torch.jit.script(module), str(path))
    return Path(path)


def standin_detector_file(directory) -> Path:
    """The stand-in detector saved as TorchScript in ``directory``."""
    return save_torchscript(StandInDetector(), Path(directory) / "standin-inception.pt")


TINY = dict(img_resolution=8, model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0)


def tiny_generator(preset: str = "cifar10-uncond", seed: int = 0, scale: float = 0.1):
    """An 8x8 network of ``preset``'s architecture with N(0, scale^2) weights (eval mode, no grads)."""
    from sidkernels.networks import build_preset

    gen = torch.Generator().manual_seed(seed)
    net = build_preset(preset, **TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return net.eval().requires_grad_(False)
