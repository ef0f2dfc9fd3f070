"""A discrete-time (DDPM) noise schedule read in EDM's sigma space.

A DDPM-style teacher is trained on ``x_vp = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` at integer timesteps
``t = 0 .. T-1``.  Dividing by ``sqrt(abar_t)`` gives EDM's variance-exploding form

    x = x_vp / sqrt(abar_t) = x0 + sigma_t eps,      sigma_t = sqrt((1 - abar_t) / abar_t),

so timestep t *is* the noise level sigma_t and ``sqrt(abar_t) = 1 / sqrt(sigma_t^2 + 1)``.  The grid of
sigma_t is increasing in t and roughly geometric (SD 1.5: 0.0292 at t = 0, 14.6 at t = 999), so a
continuous sigma is snapped to the timestep nearest in log sigma.

The schedule comes from a diffusers scheduler config: ``alphas_cumprod`` if present, else ``trained_betas``
(or ``betas``), else ``beta_schedule`` (``linear``, ``scaled_linear``, ``squaredcos_cap_v2``) with
``beta_start``/``beta_end``/``num_train_timesteps``; abar is formed in float32 exactly as diffusers forms it.
Sampler-only settings (``clip_sample``, ``thresholding``, ``steps_offset``, ``timestep_spacing``) do not
change the denoiser and are ignored; ``rescale_betas_zero_snr`` (abar_{T-1} = 0, an infinite sigma) is
refused.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _config_dict(scheduler_config) -> dict:
    """A plain dict from a config mapping, a diffusers scheduler or its ``.config``."""
    if isinstance(scheduler_config, Mapping):
        return dict(scheduler_config)
    config = getattr(scheduler_config, "config", None)
    if isinstance(config, Mapping):
        out = dict(config)
        if getattr(scheduler_config, "alphas_cumprod", None) is not None:
            out["alphas_cumprod"] = scheduler_config.alphas_cumprod
        return out
    raise TypeError(f"scheduler_config must be a mapping (a diffusers scheduler config) or a diffusers "
                    f"scheduler, got {type(scheduler_config).__name__}")


def _cosine_betas(num_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Glide's cosine schedule: ``beta_i = min(1 - abar((i+1)/T) / abar(i/T), max_beta)`` with
    ``abar(s) = cos^2((s + 0.008) / 1.008 * pi / 2)``, computed in Python floats, stored as float32."""
    def abar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = [min(1 - abar((i + 1) / num_steps) / abar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float32)


def alphas_cumprod_from_config(scheduler_config) -> torch.Tensor:
    """``abar_t`` (float32, shape [T]) of a diffusers scheduler config (see the module docstring)."""
    cfg = _config_dict(scheduler_config)
    if cfg.get("rescale_betas_zero_snr"):
        raise ValueError("scheduler_config has rescale_betas_zero_snr=True: abar at the last timestep is 0, an "
                         "infinite sigma that an EDM denoiser cannot take; use a config without it")
    if cfg.get("alphas_cumprod") is not None:
        abar = torch.as_tensor(cfg["alphas_cumprod"], dtype=torch.float32).reshape(-1)
    else:
        betas = cfg.get("trained_betas")
        if betas is None:
            betas = cfg.get("betas")
        if betas is not None:
            betas = torch.as_tensor(betas, dtype=torch.float32).reshape(-1)
        elif cfg.get("beta_schedule") is not None:
            betas = _betas_from_schedule(cfg)
        else:
            raise ValueError("scheduler_config has none of alphas_cumprod, trained_betas/betas or beta_schedule: "
                             "the noise schedule of the teacher cannot be formed (pass the teacher's "
                             "scheduler/scheduler_config.json)")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("scheduler_config betas must all lie in (0, 1)")
        abar = torch.cumprod(1.0 - betas, dim=0)
    if abar.numel() < 2:
        raise ValueError(f"scheduler_config describes {abar.numel()} timesteps; need at least 2")
    if not bool(((abar > 0) & (abar < 1)).all()) or not bool((abar[1:] < abar[:-1]).all()):
        raise ValueError("scheduler_config alphas_cumprod must lie in (0, 1) and decrease strictly with t")
    return abar


def _betas_from_schedule(cfg: dict) -> torch.Tensor:
    name = cfg["beta_schedule"]
    steps = int(cfg.get("num_train_timesteps", 1000))
    start, end = float(cfg.get("beta_start", 0.0001)), float(cfg.get("beta_end", 0.02))
    if name == "linear":
        return torch.linspace(start, end, steps, dtype=torch.float32)
    if name == "scaled_linear":  # linear in sqrt(beta), the latent-diffusion schedule
        return torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float32) ** 2
    if name == "squaredcos_cap_v2":
        return _cosine_betas(steps)
    raise ValueError(f"scheduler_config beta_schedule must be one of {BETA_SCHEDULES}, got {name!r}")


def prediction_type_from_config(scheduler_config, prediction_type: str | None = None) -> str:
    """The teacher's output parameterisation: ``prediction_type`` if given, else the config's (diffusers'
    default ``epsilon`` when the config has none)."""
    kind = prediction_type or _config_dict(scheduler_config).get("prediction_type") or "epsilon"
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {kind!r}")
    return kind


class DiscreteSchedule:
    """The sigma grid ``sigma_t = sqrt((1 - abar_t) / abar_t)`` of ``abar`` (float32 [T]).

    ``alphas_cumprod`` is float32 on the CPU, ``sigmas`` float64 (formed from the float32 abar) and
    ``log_sigmas`` its log; lookups use a copy of the tables on the device of their argument (made once per
    device), so the tables never follow a network's dtype.
    """

    def __init__(self, alphas_cumprod: torch.Tensor):
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float32).reshape(-1).cpu()
        self.alphas_cumprod = abar
        self.sigmas = ((1 - abar.double()) / abar.double()).sqrt()
        self.log_sigmas = self.sigmas.log()
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_config(cls, scheduler_config) -> DiscreteSchedule:
        return cls(alphas_cumprod_from_config(scheduler_config))

    @property
    def num_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    def _on(self, device: torch.device):
        if device not in self._tables:
            self._tables[device] = tuple(t.to(device) for t in (self.alphas_cumprod, self.sigmas, self.log_sigmas))
        return self._tables[device]

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        """``abar_t`` (float32) for integer timesteps ``t`` (any shape)."""
        return self._on(t.device)[0][t.long()]

    def sigma(self, t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``sigma_t`` for integer timesteps ``t`` (any shape), in ``dtype``."""
        return self._on(t.device)[1][t.long()].to(dtype)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The timestep whose sigma_t is nearest to ``sigma`` in log sigma (int64, sigma's shape); sigma > 0.
        Values beyond the grid snap to its ends (t = 0 or T-1)."""
        log_sigmas = self._on(sigma.device)[2]
        s = sigma.to(torch.float64).log().reshape(-1).contiguous()
        hi = torch.searchsorted(log_sigmas, s).clamp(1, self.num_timesteps - 1)
        lo = hi - 1
        take_hi = (log_sigmas[hi] - s).abs() < (s - log_sigmas[lo]).abs()
        return torch.where(take_hi, hi, lo).reshape(sigma.shape)

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """``sigma`` snapped to the grid (sigma's shape and dtype)."""
        return self.sigma(self.timestep(sigma), sigma.dtype)
