"""Images to compute FID statistics of, as batches of uint8 ``[B, C, H, W]`` tensors on a device.

* a folder of images, or a ``.zip``, in EDM's dataset layout (read by :class:`sidkernels.distill.image_data.
  ImageDataset`: PNG/JPEG/BMP/WebP, nested folders, in sorted name order), decoded by DataLoader workers into
  pinned memory;
* the ``.npz`` that ``sidkernels sample`` writes (``images``: uint8 ``[N, H, W, C]``), held in memory.

Every image must have the first image's shape; C is 1 or 3.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


class _SameShape(torch.utils.data.Dataset):
    """The uint8 images of an :class:`ImageDataset`, each checked against the first image's shape."""

    def __init__(self, dataset, name: str):
        self.dataset, self.name = dataset, name

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.dataset[i][0]
        if tuple(image.shape) != self.dataset.shape:
            raise ValueError(f"{self.name}: every image must be {list(self.dataset.shape)} (the first image's "
                             f"shape); {self.dataset.names[i]} is {list(image.shape)}")
        return image


class ImageSource:
    """``len(source)`` images of ``shape`` [C, H, W]; ``batches(...)`` streams them in order."""

    def __init__(self, path, *, name: str = "images"):
        self.path, self.name = Path(path), name
        if not self.path.exists():
            raise FileNotFoundError(f"{name}: no such folder, zip or npz: {self.path}")
        self._array = None
        if self.path.suffix.lower() == ".npz":
            self._array = _read_npz(self.path, name)
            n, h, w, c = self._array.shape
            self.shape = (c, h, w)
            self._len = n
        else:
            from sidkernels.distill.image_data import ImageDataset

            try:
                self._dataset = ImageDataset(self.path, resolution=None, channels=None)
            except ValueError as err:
                raise ValueError(f"{name}: {err} (expected a folder or zip of images in EDM's dataset layout, or "
                                 f"the .npz of `sidkernels sample`)") from None
            self.shape = self._dataset.shape
            self._len = len(self._dataset)
        if self.shape[0] not in (1, 3):
            raise ValueError(f"{name}: images must have 1 or 3 channels, {self.path} has {self.shape[0]}")

    def __len__(self) -> int:
        return self._len

    def batches(self, batch: int, *, num: int | None = None, device: torch.device | str = "cpu",
                workers: int | None = None) -> Iterator[torch.Tensor]:
        """The first ``num`` images (default all) in batches of ``batch``, uint8 ``[B, C, H, W]`` on ``device``
        (copied from pinned memory when it is a GPU)."""
        device = torch.device(device)
        num = len(self) if num is None else num
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if not 1 <= num <= len(self):
            raise ValueError(f"num: {self.path} has {len(self)} images, asked for {num}")
        pin = device.type == "cuda"
        if self._array is not None:
            for start in range(0, num, batch):
                chunk = torch.from_numpy(np.ascontiguousarray(self._array[start:min(start + batch, num)]))
                chunk = chunk.permute(0, 3, 1, 2).contiguous()
                yield (chunk.pin_memory() if pin else chunk).to(device, non_blocking=pin)
            return
        workers = default_workers() if workers is None else workers
        subset = torch.utils.data.Subset(_SameShape(self._dataset, self.name), range(num))
        loader = torch.utils.data.DataLoader(subset, batch_size=batch, shuffle=False, num_workers=workers,
                                             pin_memory=pin)
        for chunk in loader:
            yield chunk.to(device, non_blocking=pin)


def _read_npz(path: Path, name: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as f:
            files = list(f.files)
            images = f["images"] if "images" in files else None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:  # not an npz, or pickled objects in it
        raise ValueError(f"{name}: {path} is not a readable npz of images: {err}") from None
    if images is None:
        raise ValueError(f"{name}: {path} has no 'images' array (the .npz of `sidkernels sample` holds uint8 "
                         f"images [N, H, W, C]); found {sorted(files)}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"{name}: {path}: 'images' must be non-empty uint8 [N, H, W, C], got {images.dtype} "
                         f"{list(images.shape)}")
    return images


def open_images(path, *, name: str = "images") -> ImageSource:
    """An :class:`ImageSource` for a folder, a zip or an npz; errors name the argument ``name``."""
    return ImageSource(path, name=name)
