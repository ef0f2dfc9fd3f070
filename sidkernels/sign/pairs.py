"""Regression pairs for L_reg: (z_k, y_k) with z_k = sigma_max eps_k and y_k the teacher's deterministic
Heun sample from z_k (SIGN.md 4.4), generated once with fixed seeds and cached as safetensors next to the
teacher cache (keyed by the teacher's weights, the count and the sampler settings)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sidkernels.checkpoint.safetensors_io import _atomic_write
from sidkernels.sampler import sample_heun


def _teacher_digest(teacher) -> str:
    h = hashlib.sha256()
    for key, t in sorted(teacher.state_dict().items()):
        h.update(key.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def teacher_pairs(teacher, count: int, *, num_steps: int, sigma_max: float = 80.0, seed: int = 0, batch: int = 500,
                  device=None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(z [count, C, H, W], y [count, C, H, W], labels or None)`` on the CPU, fp32."""
    gen = torch.Generator().manual_seed(seed)
    shape = (teacher.img_channels, teacher.img_resolution, teacher.img_resolution)
    zs, ys, labels = [], [], []
    for start in range(0, count, batch):
        m = min(batch, count - start)
        eps = torch.randn((m, *shape), generator=gen, dtype=torch.float64)
        lab = None
        if teacher.label_dim:
            lab = torch.nn.functional.one_hot(torch.randint(teacher.label_dim, (m,), generator=gen),
                                              teacher.label_dim).float()
            labels.append(lab)
        with torch.no_grad():
            y = sample_heun(teacher, eps.to(device), num_steps=num_steps, sigma_max=sigma_max,
                            class_labels=None if lab is None else lab.to(device), progress=progress)
        zs.append((sigma_max * eps).float())
        ys.append(y.float().cpu())
    return torch.cat(zs), torch.cat(ys), (torch.cat(labels) if labels else None)


def cached_pairs(teacher, count: int, cache_dir, *, num_steps: int, sigma_max: float = 80.0, seed: int = 0,
                 device=None, progress: bool = False):
    """:func:`teacher_pairs`, read from ``cache_dir`` when this teacher's pairs were made before."""
    key = f"{_teacher_digest(teacher)}-{count}-{num_steps}-{sigma_max}-{seed}"
    path = Path(cache_dir) / f"sign-pairs-{key}.safetensors"
    if path.is_file():
        data = load_file(str(path))
        return data["z"], data["y"], data.get("labels")
    z, y, labels = teacher_pairs(teacher, count, num_steps=num_steps, sigma_max=sigma_max, seed=seed,
                                 device=device, progress=progress)
    tensors = {"z": z, "y": y} | ({"labels": labels} if labels is not None else {})
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: save_file(tensors, tmp))
    return z, y, labels
