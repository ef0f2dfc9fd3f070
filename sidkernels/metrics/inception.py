"""Inception-v3 with the parameter names and shapes of pytorch-fid's state dict
``pt_inception-2015-12-05-6726825d.pth`` (the TensorFlow FID graph ported to PyTorch), so that file can be
used as a FID detector without pytorch-fid or torchvision.

The graph is torchvision's Inception-v3 layout (1008 classes, no auxiliary head) with the FID variant's
pooling: the average pools inside the 35x35, 17x17 and first 8x8 mixed blocks leave the zero padding out of
their average (``count_include_pad=False``, as TensorFlow does), and the last block's pool branch takes a max
instead of an average.  Every convolution is bias-free, followed by batch norm (eps 1e-3) and ReLU.

Input: uint8 ``[N, 3, H, W]``, scaled to [0, 1], resized to 299x299 (bilinear, ``align_corners=False``) and
mapped to [-1, 1] (pytorch-fid's preprocessing).  ``return_features=True`` gives the 2048-d average-pool
features, otherwise the 1008 logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008


class ConvBN(nn.Module):
    """``relu(bn(conv(x)))``, bias-free convolution, batch norm eps 1e-3."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 average over the unpadded neighbours (TensorFlow's average pool)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


class Mixed35(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1 (``pool_features`` channels)."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool_3x3(x))], 1)


class Reduce35(nn.Module):
    """35x35 -> 17x17: 3x3/2 | 1x1-3x3-3x3/2 | max pool 3x3/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class Mixed17(nn.Module):
    """17x17 block with factorised 7x7 convolutions (``c7`` inner channels): 1x1 | 1x1-1x7-7x1 |
    1x1-7x1-1x7-7x1-1x7 | avg pool-1x1."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = conv(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(_avg_pool_3x3(x))], 1)


class Reduce17(nn.Module):
    """17x17 -> 8x8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool 3x3/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            deep = conv(deep)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), deep, F.max_pool2d(x, 3, stride=2)], 1)


class Mixed8(nn.Module):
    """8x8 block with split 1x3/3x1 heads: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1, the pool an
    unpadded average (``pool="avg"``) or a max (``pool="max"``, the FID graph's last block)."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, **row)
        self.branch3x3_2b = ConvBN(384, 384, **col)
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, **row)
        self.branch3x3dbl_3b = ConvBN(384, 384, **col)
        self.branch_pool = ConvBN(cin, 192, 1)
        self.pool = {"avg": _avg_pool_3x3, "max": _max_pool_3x3}[pool]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.branch3x3_1(x)
        deep = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(mid), self.branch3x3_2b(mid),
                          self.branch3x3dbl_3a(deep), self.branch3x3dbl_3b(deep),
                          self.branch_pool(self.pool(x))], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (see the module docstring); ``forward(images, return_features=False)``."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = Mixed35(192, 32)
        self.Mixed_5c = Mixed35(256, 64)
        self.Mixed_5d = Mixed35(288, 64)
        self.Mixed_6a = Reduce35(288)
        self.Mixed_6b = Mixed17(768, 128)
        self.Mixed_6c = Mixed17(768, 160)
        self.Mixed_6d = Mixed17(768, 160)
        self.Mixed_6e = Mixed17(768, 192)
        self.Mixed_7a = Reduce17(768)
        self.Mixed_7b = Mixed8(1280, "avg")
        self.Mixed_7c = Mixed8(2048, "max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    @classmethod
    def from_state_dict(cls, state: dict, *, source: str = "state dict") -> FIDInceptionV3:
        """The network with pytorch-fid's weights ``state``; names and shapes must match exactly."""
        from sidkernels.metrics.detector import EXPECTED, DetectorError

        net = cls()
        mine = net.state_dict()
        missing = sorted(set(mine) - set(state) - {k for k in mine if k.endswith("num_batches_tracked")})
        unexpected = sorted(set(state) - set(mine))
        wrong = sorted(k for k in set(mine) & set(state) if tuple(mine[k].shape) != tuple(state[k].shape))
        if missing or unexpected or wrong:
            details = "; ".join(f"{what} {names[:3]}{' ...' if len(names) > 3 else ''}" for what, names in
                                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if names)
            raise DetectorError(f"detector: {source} is a state dict but not pytorch-fid's Inception ({details}); "
                                f"{EXPECTED}")
        net.load_state_dict(state, strict=False)
        return net.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """2048-d average-pool features of preprocessed images ``x`` [N, 3, 299, 299] in [-1, 1]."""
        for stem in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3):
            x = stem(x)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        """uint8 (or [0, 255] float) images [N, 3, H, W] -> features [N, 2048] or logits [N, 1008]."""
        x = images.to(torch.float32) / 255
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        features = self.features(2 * x - 1)
        return features if return_features else self.fc(features)
