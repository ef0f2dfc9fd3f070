"""Images for people: the official ``[-1, 1] -> uint8`` conversion, grids and PNG files."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def uint8_images(x: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` images ``[N, C, H, W]`` -> uint8 ``[N, C, H, W]`` on their device (``x * 127.5 + 128``,
    clipped, truncated: the official conversion)."""
    return (x.detach().float() * 127.5 + 128).clip(0, 255).to(torch.uint8)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[-1, 1]`` images ``[N, C, H, W]`` -> uint8 ``[N, H, W, C]`` numpy (:func:`uint8_images`)."""
    return uint8_images(x).permute(0, 2, 3, 1).cpu().numpy()


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 0) -> np.ndarray:
    """Tile uint8 ``[N, H, W, C]`` images into ``[rows*(H+pad), cols*(W+pad), C]`` (mid-grey padding)."""
    n, h, w, c = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * cols, h + pad, w + pad, c), 128, dtype=np.uint8)
    grid[:n, :h, :w] = images
    return grid.reshape(rows, cols, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4).reshape(
        rows * (h + pad), cols * (w + pad), c)


def save_png(grid: np.ndarray, path, scale: int = 1) -> Path:
    """Write a uint8 ``[H, W, C]`` array (C = 1 or 3) as PNG, each pixel repeated ``scale`` times."""
    import matplotlib.image
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    if grid.shape[-1] == 1:
        matplotlib.image.imsave(path, grid[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        matplotlib.image.imsave(path, grid)
    return Path(path)


def save_grid(images: torch.Tensor, path, columns: int | None = None, scale: int = 1, pad: int = 1) -> Path:
    """``[-1, 1]`` images ``[N, C, H, W]`` -> a PNG grid."""
    return save_png(image_grid(to_uint8(images), columns, pad), path, scale)
