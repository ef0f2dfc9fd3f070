"""Learning-rate schedules of a distillation run, as a factor on the configured learning rates.

    constant   f(p) = 1
    cosine     f(p) = (1 + cos(pi p)) / 2          (1 at the start, 0 at the end of the run)

with ``p = cur_nimg / (kimg * 1000)`` the fraction of the run done before the step, clipped to [0, 1].
"""
from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, progress: float) -> float:
    """The factor ``f(p)`` of ``schedule`` at run fraction ``progress`` (values outside [0, 1] are clipped)."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return 1.0
    p = min(max(float(progress), 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * p))
