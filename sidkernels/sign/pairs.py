"""Regression pairs for L_reg (docs/sign.md §4.5, §7): inputs on the teacher's deterministic Heun trajectories and the
trajectories' end points, generated once with fixed seeds and cached as safetensors next to the teacher
cache (keyed by the teacher's weights, the count, the sampler settings and the levels kept).

``levels="end"``: the paper-style pairs (z_k, y_k), z_k = sigma_max eps_k and y_k = Heun(z_k).
``levels="trajectory"`` [R, a project extension]: every Heun state x_k(t_i), i = 0..N-1 (x_k(t_0) = z_k), is
an input whose target is the same end point y_k, so that L_reg teaches f the teacher's ODE map from every
noise level of the grid, which the re-noising multi-step sampler relies on. Memory: count x N x d elements of
the inputs' storage dtype (float16 halves it: CIFAR-10 at 50k pairs x 18 levels is 10.3 GiB in float32, 5.2 GiB
in float16); targets stay float32.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file, save_file

from sidkernels.checkpoint.safetensors_io import _atomic_write
from sidkernels.sampler import sample_heun

LEVELS = ("end", "trajectory")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}  # stored inputs
MAX_BYTES = 8 * 2**30  # the pairs' inputs stay in memory (on the training device) for the whole run


class Pairs(NamedTuple):
    """``inputs [count, L, C, H, W]`` (L = 1: the latents; L = N: the Heun states at the sampler's levels, the
    latents first) in their storage dtype, targets ``y [count, C, H, W]`` and ``labels [count, label_dim]`` or
    None in fp32."""
    inputs: torch.Tensor
    y: torch.Tensor
    labels: torch.Tensor | None

    @property
    def z(self) -> torch.Tensor:
        return self.inputs[:, 0]


def _teacher_digest(teacher) -> str:
    h = hashlib.sha256()
    for key, t in sorted(teacher.state_dict().items()):
        h.update(key.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def input_bytes(count: int, shape, *, num_steps: int, levels: str, dtype: torch.dtype) -> int:
    """Memory of the stored inputs of ``count`` pairs of samples of ``shape``."""
    per_level = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    return count * (num_steps if levels == "trajectory" else 1) * per_level


def teacher_pairs(teacher, count: int, *, num_steps: int, sigma_max: float = 80.0, seed: int = 0,
                  levels: str = "end", dtype: torch.dtype = torch.float32, batch: int = 500, device=None,
                  progress: bool = False) -> Pairs:
    """Run the teacher's Heun sampler from ``count`` seeded latents and keep the inputs of ``levels``, stored
    in ``dtype`` (float32, float16 or bfloat16)."""
    if levels not in LEVELS:
        raise ValueError(f"levels must be one of {LEVELS}, got {levels!r}")
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype (of the stored inputs) must be one of {sorted(DTYPES)}, got {dtype}")
    gen = torch.Generator().manual_seed(seed)
    shape = (teacher.img_channels, teacher.img_resolution, teacher.img_resolution)
    stored = input_bytes(count, shape, num_steps=num_steps, levels=levels, dtype=dtype)
    if stored > MAX_BYTES:
        raise ValueError(f"{count} pairs at levels={levels!r} ({num_steps} Heun states of {shape}) need "
                         f"{stored / 2**30:.1f} GiB of {dtype} inputs (limit {MAX_BYTES / 2**30:.0f} GiB): lower "
                         f"reg_pairs, store them as float16 (reg_pair_dtype) or use reg_levels='end'")
    inputs, ys, labels = [], [], []
    for start in range(0, count, batch):
        m = min(batch, count - start)
        eps = torch.randn((m, *shape), generator=gen, dtype=torch.float64)
        lab = None
        if teacher.label_dim:
            lab = torch.nn.functional.one_hot(torch.randint(teacher.label_dim, (m,), generator=gen),
                                              teacher.label_dim).float()
            labels.append(lab)
        with torch.no_grad():
            y, states = sample_heun(teacher, eps.to(device), num_steps=num_steps, sigma_max=sigma_max,
                                    class_labels=None if lab is None else lab.to(device), progress=progress,
                                    return_trajectory=True)
        states = states.to(dtype).cpu()
        inputs.append(states if levels == "trajectory" else states[:, :1])
        ys.append(y.float().cpu())
    return Pairs(torch.cat(inputs), torch.cat(ys), torch.cat(labels) if labels else None)


def cached_pairs(teacher, count: int, cache_dir, *, num_steps: int, sigma_max: float = 80.0, seed: int = 0,
                 levels: str = "end", dtype: torch.dtype = torch.float32, device=None, progress: bool = False) -> Pairs:
    """:func:`teacher_pairs`, read from ``cache_dir`` when this teacher's pairs were made before."""
    key = f"{_teacher_digest(teacher)}-{count}-{num_steps}-{sigma_max}-{seed}-{levels}"
    if dtype != torch.float32:
        key += f"-{str(dtype).removeprefix('torch.')}"
    path = Path(cache_dir) / f"sign-pairs-{key}.safetensors"
    if path.is_file():
        data = load_file(str(path))
        return Pairs(data["inputs"], data["y"], data.get("labels"))
    pairs = teacher_pairs(teacher, count, num_steps=num_steps, sigma_max=sigma_max, seed=seed, levels=levels,
                          dtype=dtype, device=device, progress=progress)
    tensors = {name: t for name, t in pairs._asdict().items() if t is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: save_file(tensors, tmp))
    return pairs
