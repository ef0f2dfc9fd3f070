"""Exponential moving average of the generator (docs/sid.md §2.2), over parameters only.

    h = ema_halflife_kimg * 1000;  h = min(h, cur_nimg * rampup) if rampup;  beta = 0.5 ** (batch / max(h, 1e-8))
    p_ema <- lerp(p, p_ema, beta) = p_ema + (1 - beta) (p - p_ema)
"""
from __future__ import annotations

import torch


def ema_beta(cur_nimg: int, batch: int, halflife_kimg: float, rampup: float | None) -> float:
    h = halflife_kimg * 1000
    if rampup is not None:
        h = min(h, cur_nimg * rampup)
    return 0.5 ** (batch / max(h, 1e-8))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, beta: float) -> None:
    """One fused (foreach) lerp over all parameters; buffers are not averaged (as in the official loop)."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in net.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - beta)
