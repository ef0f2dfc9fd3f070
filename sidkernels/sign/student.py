"""The time-free idempotent student f and its frozen copy f^- (docs/sign.md §2).

f has the teacher's architecture and weights and no time input.  ``time_mode``:

* ``fixed`` (default): ``f(u) = D_theta(u; sigma_c)``, the EDM denoiser at a constant sigma_c (80 = sigma_max);
* ``estimated``: ``f(u) = D_theta(u; sigma_hat(u))`` with a parameter-free noise estimate of the input
  (median absolute 3x3-Laplacian residual / 0.6745, rescaled for white noise, clipped to [0.002, 80];
  a stop-gradient) -- a project choice, not from the paper [R];
* ``none``: the EDM scalings at sigma_c with the noise embedding zeroed.

The copy f^- is a functional call of the same module with *detached* current parameters: gradients reach
its input, never its parameters (IGN routing).  Not an EMA.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sidkernels import edm_precond_in, edm_precond_out

TIME_MODES = ("fixed", "estimated", "none")
SIGMA_RANGE = (0.002, 80.0)


def estimate_sigma(u: torch.Tensor) -> torch.Tensor:
    """Per-sample noise level of ``u`` [N, C, H, W] from its finest-scale residual (no gradient)."""
    with torch.no_grad():
        x = u.float()
        smooth = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        resid = (x - smooth).flatten(1).abs()
        # for white noise of std s the residual has std s * sqrt(8/9)
        sigma = resid.median(dim=1).values / 0.6745 / math.sqrt(8 / 9)
        return sigma.clamp(*SIGMA_RANGE)


class IdempotentStudent(nn.Module):
    """``f(u, labels)`` around a preconditioned network (e.g. the generator copy of the teacher)."""

    def __init__(self, net: nn.Module, time_mode: str = "fixed", sigma_c: float = 80.0):
        super().__init__()
        if time_mode not in TIME_MODES:
            raise ValueError(f"time_mode must be one of {TIME_MODES}, got {time_mode!r}")
        if not sigma_c > 0:
            raise ValueError(f"sigma_c must be > 0, got {sigma_c}")
        self.net = net
        self.time_mode = time_mode
        self.sigma_c = float(sigma_c)

    def forward(self, u: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        n = u.shape[0]
        if self.time_mode == "estimated":
            return self.net(u, estimate_sigma(u), labels)
        sigma = torch.full((n,), self.sigma_c, device=u.device)
        if self.time_mode == "fixed":
            return self.net(u, sigma, labels)
        net = self.net
        y, _ = edm_precond_in(u.float(), sigma, sigma_data=net.sigma_data, precond=net.precond)
        out = net.model(y, torch.zeros(n, device=u.device), class_labels=net._labels(labels))
        return edm_precond_out(u.float(), out, sigma, sigma_data=net.sigma_data, precond=net.precond)


def copy_call(student: IdempotentStudent, u: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``f^-(u)``: the student with detached current parameters (gradient to ``u`` only).  A student around a
    ``DistributedDataParallel`` network is called on the network inside (no gradient of its parameters to
    all-reduce)."""
    if isinstance(student, IdempotentStudent) and isinstance(student.net, DistributedDataParallel):
        student = IdempotentStudent(student.net.module, student.time_mode, student.sigma_c)
    params = {name: p.detach() for name, p in student.named_parameters()}
    return torch.func.functional_call(student, params, (u, labels))
