"""Real images for SiDA's discriminator, in EDM's dataset layout (what its ``dataset_tool.py`` writes).

A folder or a ``.zip`` of images (PNG, JPEG, BMP, WebP; nested folders allowed), with an optional
``dataset.json`` of the form ``{"labels": [["00000/img00000000.png", 6], ...]}`` giving each file's class.
Images are decoded lazily by DataLoader workers (nothing is held in memory) and returned as
``x / 127.5 - 1`` in [-1, 1].  Every image must be ``[channels, resolution, resolution]`` (the teacher's;
``None`` takes them from the first image); a class-conditional teacher needs the labels.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class ImageDataset(torch.utils.data.Dataset):
    """Items are ``(uint8 image [C, R, R], class index)``; the index is -1 for unlabelled data."""

    def __init__(self, path: str | Path, *, resolution: int | None, channels: int | None):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"data: no such folder or zip: {self.path}")
        self.is_zip = self.path.is_file()
        if self.is_zip and not zipfile.is_zipfile(self.path):
            raise ValueError(f"data must be a folder or a .zip of images, got {self.path}")
        self._zip = None
        names = self._all_names()
        self.names = sorted(n for n in names if n.lower().endswith(IMAGE_SUFFIXES))
        if not self.names:
            raise ValueError(f"data: no images ({', '.join(IMAGE_SUFFIXES)}) in {self.path}")
        self.labels = self._read_labels() if "dataset.json" in names else None
        first = self[0][0]
        self.shape = (channels or first.shape[0], resolution or first.shape[1], resolution or first.shape[2])
        if tuple(first.shape) != self.shape:
            raise ValueError(f"data: images must be {list(self.shape)} (the teacher's channels and resolution), "
                             f"{self.names[0]} is {list(first.shape)}")

    def _all_names(self) -> list[str]:
        if self.is_zip:
            with zipfile.ZipFile(self.path) as z:
                return z.namelist()
        return [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]

    def _read(self, name: str) -> bytes:
        if not self.is_zip:
            return (self.path / name).read_bytes()
        if self._zip is None:  # one handle per worker process
            self._zip = zipfile.ZipFile(self.path)
        return self._zip.read(name)

    def _read_labels(self) -> np.ndarray | None:
        """Class indices of ``self.names`` from dataset.json (None when it holds no labels)."""
        labels = json.loads(self._read("dataset.json")).get("labels")
        if labels is None:
            return None
        by_name = dict(labels)
        missing = [n for n in self.names if n not in by_name]
        if missing:
            raise ValueError(f"data: dataset.json has no label for {len(missing)} images (first: {missing[0]})")
        return np.array([int(by_name[n]) for n in self.names], dtype=np.int64)

    def __getstate__(self):
        return dict(self.__dict__, _zip=None)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = np.asarray(Image.open(io.BytesIO(self._read(self.names[i]))))
        image = image[:, :, None] if image.ndim == 2 else image
        label = -1 if self.labels is None else int(self.labels[i])
        return torch.from_numpy(image.transpose(2, 0, 1).copy()), label


class RealImages:
    """An endless stream of random real batches (sampled with replacement) on ``device``; the order depends
    only on ``seed``.  ``label_dim > 0`` returns one-hot labels and requires a labelled data set."""

    def __init__(self, dataset: ImageDataset, batch: int, device: torch.device, *, label_dim: int, seed: int,
                 workers: int = 2):
        if label_dim and dataset.labels is None:
            raise ValueError(f"data: the teacher is class-conditional (label_dim={label_dim}) but {dataset.path} "
                             f"has no labels (dataset.json)")
        if label_dim and (dataset.labels.min() < 0 or dataset.labels.max() >= label_dim):
            raise ValueError(f"data: labels must be in [0, {label_dim}), got [{dataset.labels.min()}, "
                             f"{dataset.labels.max()}]")
        self.dataset, self.device, self.label_dim = dataset, device, label_dim
        self.gen = torch.Generator().manual_seed(seed)
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=2 ** 62, generator=self.gen)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                                             pin_memory=device.type == "cuda", persistent_workers=workers > 0)
        self.batches = iter(loader)

    def _one_hot(self, classes: torch.Tensor) -> torch.Tensor | None:
        if not self.label_dim:
            return None
        return torch.nn.functional.one_hot(classes.to(self.device), self.label_dim).float()

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(images [B, C, R, R] in [-1, 1] (fp32), one-hot labels or None)``."""
        images, classes = next(self.batches)
        images = images.to(self.device, non_blocking=True).float() / 127.5 - 1
        return images, self._one_hot(classes)

    def labels(self, n: int) -> torch.Tensor | None:
        """One-hot labels of n random data items (no image is decoded), or None when unconditional."""
        if not self.label_dim:
            return None
        idx = torch.randint(len(self.dataset), (n,), generator=self.gen)
        return self._one_hot(torch.from_numpy(self.dataset.labels)[idx])
