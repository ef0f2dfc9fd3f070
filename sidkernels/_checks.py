"""Argument validation shared by the public functions.

Every check raises ``TypeError`` (wrong kind or dtype) or ``ValueError`` (wrong shape, value or device)
with the argument's name and what was expected.  Metadata checks are free; value checks (``sigma > 0``)
need the data (a host synchronisation on CUDA), so they run only in eager mode (never while
``torch.compile`` traces), and can be switched off: globally with :func:`set_value_checks`, or for a block of
code in this thread/task with :func:`value_checks` (the trainers do so: their sigmas are positive by
construction).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_value_checks = True
_value_checks_here: contextvars.ContextVar[bool | None] = contextvars.ContextVar("sidkernels_value_checks",
                                                                                 default=None)


def set_value_checks(enabled: bool) -> None:
    """Turn the eager data checks (e.g. ``sigma > 0``) on or off globally."""
    global _value_checks
    _value_checks = bool(enabled)


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Context manager: the eager data checks on or off inside (this thread/task only)."""
    token = _value_checks_here.set(bool(enabled))
    try:
        yield
    finally:
        _value_checks_here.reset(token)


def value_checks_enabled() -> bool:
    if torch.compiler.is_compiling():
        return False
    here = _value_checks_here.get()
    return _value_checks if here is None else here


def float_tensor(name: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating dtype in {[str(d) for d in FLOAT_DTYPES]}, got {t.dtype}")
    return t


def batch(name: str, t: torch.Tensor) -> int:
    """Check ``t`` is a batch of samples ``[N, ...]`` with N >= 1 and at least one element per sample."""
    if t.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension [N, ...], got a 0-dim tensor")
    if t.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (shape {tuple(t.shape)}); expected N >= 1 samples")
    if t.numel() == 0:
        raise ValueError(f"{name} has no elements per sample (shape {tuple(t.shape)})")
    return t.shape[0]


def same_shape(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")


def same_device(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; put them on one device")


def no_grad_required(name: str, t: torch.Tensor) -> None:
    if t.requires_grad:
        raise ValueError(f"{name} must not require grad: sidkernels ops treat it as a constant (detach it)")


def per_sample_sigma(sigma, n: int, ref_name: str, ref: torch.Tensor, *, positive: bool = True) -> torch.Tensor:
    """Return ``sigma`` as a float32 tensor of shape ``[n]`` on ``ref``'s device.

    Accepts a Python number, a 0-dim tensor, or a tensor with ``n`` elements shaped ``[n]`` or
    ``[n, 1, ..., 1]``.
    """
    if isinstance(sigma, (int, float)):
        if positive and not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        return torch.full((n,), float(sigma), dtype=torch.float32, device=ref.device)
    float_tensor("sigma", sigma)
    same_device("sigma", sigma, ref_name, ref)
    no_grad_required("sigma", sigma)
    if sigma.dim() == 0:
        sigma = sigma.expand(n)
    elif sigma.shape[0] != n or sigma.numel() != n:
        raise ValueError(f"sigma must be a scalar or have one value per sample of {ref_name}: shape [{n}] or "
                         f"[{n}, 1, ...], got {tuple(sigma.shape)}")
    sigma = sigma.reshape(n).to(torch.float32).contiguous()  # kernels read sigma[n]: no stride-0 views
    if positive and value_checks_enabled() and not bool((sigma > 0).all()):
        raise ValueError(f"sigma must be > 0 everywhere, got min {sigma.min().item():.3g}")
    return sigma


def choice(name: str, value: str, options) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value
