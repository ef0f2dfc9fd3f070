"""Generation and zero-shot projection with an idempotent student f (docs/sign.md §8, §9).

    1 step:      x = f(sigma_max eps)
    K steps:     x <- f(sigma_max eps); then x <- f(x + sigma_k eps_k) for sigma_1 > ... > sigma_{K-1}
    repeated:    x <- f(x), again and again (IGN-style; a no-op for an exactly idempotent f)
    projection:  x = f(y + sigma_e eps) for a corrupted y (sigma_e = 0: direct projection)
    inpainting:  x <- m * y + (1 - m) * f(x + sigma_k eps) over a decreasing list of sigma_k (m = 1: known)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

RENOISE = {1: [], 2: [0.8], 3: [2.0, 0.5], 4: [5.0, 1.5, 0.4]}  # docs/sign.md §8 defaults; presets may tune their own
CORRUPTIONS = ("noisy", "masked", "lowres", "grayscale")


def renoise_sigmas(steps: int, schedule: dict | None = None) -> list[float]:
    """The re-noising levels of ``steps``-step sampling: ``schedule[steps]`` (a run's tuned lists, keys may be
    strings as read back from config.json), falling back to :data:`RENOISE`."""
    table = {int(k): list(v) for k, v in (schedule or {}).items()}
    table = {**RENOISE, **table}
    if steps not in table:
        raise ValueError(f"steps must be one of {sorted(table)} unless sigmas are given, got {steps}")
    if len(table[steps]) != steps - 1 or not all(s > 0 for s in table[steps]):
        raise ValueError(f"a {steps}-step schedule needs {steps - 1} positive re-noising levels, got {table[steps]}")
    return table[steps]


@torch.no_grad()
def sample_steps(f, eps: torch.Tensor, *, steps: int = 1, sigmas=None, schedule: dict | None = None,
                 sigma_max: float = 80.0, labels=None, generator: torch.Generator | None = None,
                 randn_like=None) -> torch.Tensor:
    """K-step generation with re-noising (``sigmas`` defaults to :func:`renoise_sigmas` of ``steps``); the
    re-noising draws come from ``randn_like(x)`` when given, else from ``generator`` on the CPU."""
    if sigmas is None:
        sigmas = renoise_sigmas(steps, schedule)
    x = f(sigma_max * eps, labels)
    for sigma in sigmas:
        if randn_like is not None:
            noise = randn_like(x)
        else:
            noise = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
        x = f(x + sigma * noise, labels)
    return x


@torch.no_grad()
def apply_repeatedly(f, x: torch.Tensor, times: int, labels=None) -> torch.Tensor:
    for _ in range(times):
        x = f(x, labels)
    return x


def corrupt(x: torch.Tensor, kind: str, *, strength: float = 0.5, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A corrupted copy of ``x`` [N, C, H, W] and the mask of trusted pixels (1 = known).

    ``noisy``: x + strength * eps; ``masked``: the central ``strength`` fraction of rows/columns set to -1 (mask 0);
    ``lowres``: 2x average-pool then nearest upsample; ``grayscale``: channel mean replicated (identity
    for one-channel images)."""
    mask = torch.ones_like(x)
    if kind == "noisy":
        noise = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
        return x + strength * noise, mask
    if kind == "masked":
        h, w = x.shape[-2:]
        dh, dw = max(1, int(h * strength / 2)), max(1, int(w * strength / 2))
        mask[..., h // 2 - dh:h // 2 + dh, w // 2 - dw:w // 2 + dw] = 0
        return torch.where(mask.bool(), x, torch.full_like(x, -1.0)), mask
    if kind == "lowres":
        return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest"), mask
    if kind == "grayscale":
        return x.mean(dim=1, keepdim=True).expand_as(x).contiguous(), mask
    raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {kind!r}")


@torch.no_grad()
def project(f, y: torch.Tensor, *, sigma_e: float = 0.0, labels=None, generator=None) -> torch.Tensor:
    """``f(y + sigma_e eps)``: larger sigma_e, more realistic and less faithful (SDEdit-like)."""
    if sigma_e > 0:
        y = y + sigma_e * torch.randn(y.shape, generator=generator, device="cpu").to(y.device)
    return f(y, labels)


@torch.no_grad()
def inpaint(f, y: torch.Tensor, mask: torch.Tensor, *, sigmas=(2.0, 1.0, 0.5, 0.2), labels=None,
            generator=None) -> torch.Tensor:
    """Keep the known pixels of y, fill the rest by repeated re-noised projection."""
    x = y
    for sigma in sigmas:
        noise = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
        x = mask * y + (1 - mask) * f(x + sigma * noise, labels)
    return x
