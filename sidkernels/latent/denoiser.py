"""A diffusers text-to-image UNet as an EDM denoiser ``D(x; sigma, cond)``, on the fused preconditioning ops.

In EDM's sigma space (:mod:`sidkernels.latent.schedule`) ``x = x0 + sigma eps`` and the UNet, trained at
timestep t on ``x_vp = sqrt(abar_t) x``, sees ``c_in x`` with ``c_in = sqrt(abar_t) = 1 / sqrt(sigma^2 + 1)``.
Its prediction F turns into the x0 estimate D as

    epsilon:       D = x - sigma F                                   (c_skip = 1, c_out = -sigma)
    v_prediction:  D = x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) F

since ``x0 = (x_vp - sqrt(1 - abar) eps) / sqrt(abar)`` and ``x0 = sqrt(abar) x_vp - sqrt(1 - abar) v``.  The
first is the fused ops' ``"vp"`` coefficient set; the second is their ``"edm"`` set with ``sigma_data = 1``
applied to ``-F``; both share ``c_in``.  So D is one :func:`sidkernels.edm_precond_in` and one
:func:`sidkernels.edm_precond_out` around the UNet, exactly the scheduler's ``pred_original_sample``.

Classifier-free guidance with scale w runs the unconditional and the conditional embedding in one batch of
2N and forms ``F = F_u + w (F_c - F_u)`` in fp32; since D is affine in F this is the same as guiding D.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

import sidkernels as sk
from sidkernels.latent.schedule import DiscreteSchedule, alphas_cumprod_from_config, prediction_type_from_config

# (fused-op coefficient set, sigma_data, sign applied to the UNet output) per prediction type
PRECOND = {"epsilon": ("vp", 0.5, 1.0), "v_prediction": ("edm", 1.0, -1.0)}
NET_INPUT_PRECOND = "vp"  # c_in = 1/sqrt(sigma^2 + 1) for both prediction types (add_noise's precond)


def sample_size(unet: nn.Module) -> tuple[int, int]:
    """The UNet's latent (H, W) from its config's ``sample_size`` (an int or a pair)."""
    size = unet.config.sample_size
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _plain(value):
    """JSON-ready copy of a config value (tuples become lists, tensors lists of floats)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _autocast_enabled(device: torch.device) -> bool:
    """Whether autocast is on for ``device`` (devices without autocast, e.g. meta, never are)."""
    try:
        return torch.is_autocast_enabled(device.type)
    except RuntimeError:
        return False


class LatentDenoiser(nn.Module):
    """``D(x; sigma, cond)`` of a ``UNet2DConditionModel``-like ``unet`` and its scheduler config.

    Args:
        unet: called as ``unet(sample, timestep, encoder_hidden_states=...).sample`` (diffusers' API).
        scheduler_config: the teacher's scheduler config (a mapping or a diffusers scheduler); it must define
            the noise schedule (``alphas_cumprod``, ``trained_betas`` or ``beta_schedule``).
        prediction_type: ``"epsilon"`` or ``"v_prediction"``; default: the config's (``epsilon`` if absent).

    ``init_kwargs`` (the UNet config, the schedule's abar and the prediction type) is the JSON that rebuilds
    the wrapper around a fresh UNet; training states store it beside the weights.
    """

    def __init__(self, unet: nn.Module, scheduler_config, prediction_type: str | None = None):
        super().__init__()
        self.prediction_type = prediction_type_from_config(scheduler_config, prediction_type)
        abar = alphas_cumprod_from_config(scheduler_config)
        self.unet = unet
        self.schedule = DiscreteSchedule(abar)
        self.precond, self.sigma_data, self.out_sign = PRECOND[self.prediction_type]
        self.init_kwargs = {"unet_config": _plain(unet.config), "prediction_type": self.prediction_type,
                            "scheduler_config": {"alphas_cumprod": abar.tolist()}}

    # ------------------------------------------------------------------ shapes
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (int(self.unet.config.in_channels), *sample_size(self.unet))

    def check_latents(self, name: str, x: torch.Tensor) -> int:
        """Check ``x`` is a batch ``[N, C, H, W]`` of this UNet's latents; returns N."""
        c, h, w = self.latent_shape
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (c, h, w):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be latents [N, {c}, {h}, {w}] (the UNet's in_channels and sample_size "
                             f"{h}x{w}), got {shape}")
        return x.shape[0]

    def _embeddings(self, name: str, e: torch.Tensor | None, n: int) -> torch.Tensor:
        dim = int(self.unet.config.cross_attention_dim)
        if not isinstance(e, torch.Tensor) or e.dim() not in (2, 3) or e.shape[-1] != dim:
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise ValueError(f"{name} must be text embeddings [N, L, {dim}] or [L, {dim}] (the UNet's "
                             f"cross_attention_dim {dim}), got {shape}")
        e = e.reshape(-1, *e.shape[-2:])
        if e.shape[0] == 1:
            return e.expand(n, -1, -1)
        if e.shape[0] != n:
            raise ValueError(f"{name} has {e.shape[0]} embeddings for {n} samples; pass one per sample or one")
        return e

    # ------------------------------------------------------------------ sigma <-> t
    def timesteps(self, sigma: torch.Tensor) -> torch.Tensor:
        """Timesteps (int64) of per-sample sigma, snapped to the nearest grid point in log sigma."""
        return self.schedule.timestep(sigma)

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.schedule.round_sigma(sigma)

    def sigma_of(self, t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.schedule.sigma(t, dtype)

    # ------------------------------------------------------------------ D
    def forward(self, x: torch.Tensor, sigma, cond: torch.Tensor, *, uncond: torch.Tensor | None = None,
                guidance: float = 1.0, timesteps: torch.Tensor | None = None,
                net_input: torch.Tensor | None = None) -> torch.Tensor:
        """Denoised ``D(x; sigma, cond)`` in fp32 (fp64 for fp64 x), shape of x.

        Args:
            x: noisy latents ``[N, C, H, W]`` in sigma space (x0 + sigma eps).
            sigma: a number or per-sample values ``[N]``; snapped to the grid (the snapped value is used for
                every coefficient).  Ignored for the UNet's timestep when ``timesteps`` is given.
            cond: text embeddings ``[N, L, D]`` (or ``[L, D]`` shared by the batch).
            uncond: the unconditional (empty-prompt) embedding; required when ``guidance != 1``.
            guidance: classifier-free guidance scale w: ``F = F_u + w (F_c - F_u)``; 1 runs only cond.
            timesteps: integer timesteps ``[N]`` (then sigma is ``sigma_t`` of these and ``sigma`` is unused).
            net_input: precomputed ``c_in(sigma) x`` (e.g. ``add_noise(..., return_net_input=True,
                precond="vp")``); skips the input-scaling pass.
        """
        n = self.check_latents("x", x)
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        if timesteps is None:
            sigma = torch.as_tensor(sigma, device=x.device)
            if sigma.numel() == 1:
                sigma = sigma.reshape(1).expand(n)
            if sigma.numel() != n:
                raise ValueError(f"sigma must be a number or have one value per sample ({n}), "
                                 f"got shape {tuple(sigma.shape)}")
            timesteps = self.timesteps(sigma.reshape(n))
        else:
            timesteps = torch.as_tensor(timesteps, device=x.device).reshape(-1).long()
            if timesteps.numel() != n:
                raise ValueError(f"timesteps must have one value per sample ({n}), got {timesteps.numel()}")
        sigma_t = self.schedule.sigma(timesteps, acc)
        cond = self._embeddings("cond", cond, n)
        guided = guidance != 1.0
        if guided:
            if uncond is None:
                raise ValueError(f"guidance={guidance} needs uncond (the empty-prompt embedding)")
            uncond = self._embeddings("uncond", uncond, n)

        param = next(self.unet.parameters())
        net_dtype = None if _autocast_enabled(x.device) else param.dtype
        if net_input is None:
            net_input, _ = sk.edm_precond_in(x, sigma_t, dtype=net_dtype or x.dtype, precond=NET_INPUT_PRECOND)
        elif net_input.shape != x.shape:
            raise ValueError(f"net_input must have the shape of x {tuple(x.shape)}, got {tuple(net_input.shape)}")
        elif net_dtype is not None:
            net_input = net_input.to(net_dtype)
        if guided:
            emb = torch.cat([uncond, cond.to(uncond.dtype)])
            F = self._unet(torch.cat([net_input, net_input]), timesteps.repeat(2), emb, net_dtype)
            F_u, F_c = F.chunk(2)
            F = torch.lerp(F_u.to(acc), F_c.to(acc), float(guidance))
        else:
            F = self._unet(net_input, timesteps, cond, net_dtype)
        if self.out_sign < 0:
            F = -F
        return sk.edm_precond_out(x, F, sigma_t, sigma_data=self.sigma_data, precond=self.precond)

    def _unet(self, sample, timesteps, emb, net_dtype):
        if net_dtype is not None:
            emb = emb.to(net_dtype)
        return self.unet(sample, timesteps, encoder_hidden_states=emb).sample
