"""Preconditioned denoisers (docs/networks.md §1): ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise, labels)``.

The input scaling and the output combination run as the fused ops :func:`sidkernels.edm_precond_in` and
:func:`sidkernels.edm_precond_out`; the wrappers add the official conventions:

* x is used in fp32 and D is returned in fp32 (fp64 inputs from the sampler are cast to fp32);
* sigma may be a number, a 0-dim / one-element tensor (shared by the batch) or one value per sample;
* the model runs in fp16 iff ``use_fp16`` and x is on CUDA and not ``force_fp32``, else in fp32 — or in
  whatever autocast chooses when the caller enables autocast (e.g. bf16);
* conditional networks need one-hot ``class_labels`` ``[N, label_dim]`` (the official wrapper silently
  substitutes an all-zero label; here a missing label is an error).

``net_input`` lets a caller that already has ``c_in(sigma) * x`` — e.g. the second output of
``sidkernels.add_noise(x0, sigma, return_net_input=True, precond=..., net_dtype=...)`` — skip the
input-scaling pass; ``x`` is still needed for ``c_skip * x``.  Outside autocast it is cast to the model
dtype; under autocast it is used as it is (pass ``net_dtype`` = the autocast dtype).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sidkernels.networks.dhariwal_unet import DhariwalUNet
from sidkernels.networks.discriminator import OUTPUTS
from sidkernels.networks.song_unet import SongUNet
from sidkernels._abi import SIGMA_DATA, VP_BETA_D, VP_BETA_MIN, VP_M
from sidkernels.ops._precond import coefficients, vp_sigma_inv
from sidkernels.ops.edm_precond_in import edm_precond_in
from sidkernels.ops.edm_precond_out import edm_precond_out

MODEL_TYPES = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}
WRAPPER_OUTPUTS = ("decoder", "raw", *(o for o in OUTPUTS if o != "decoder"))


def vp_sigma(t: float, beta_d: float = VP_BETA_D, beta_min: float = VP_BETA_MIN) -> float:
    """VP noise level ``sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)``, evaluated in fp32 as the
    official wrapper does (so ``sigma(1e-5)`` is 9.77e-4, where exact arithmetic gives 1.0005e-3)."""
    t = torch.tensor(t, dtype=torch.float32, device="cpu")
    return float(((0.5 * beta_d * t * t + beta_min * t).exp() - 1).sqrt())


def build_model(model_type: str, **kwargs) -> nn.Module:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {tuple(MODEL_TYPES)}, got {model_type!r}")
    return MODEL_TYPES[model_type](**kwargs)


class Preconditioner(nn.Module):
    """Shared forward of the wrappers.  Subclasses set ``precond`` (the fused ops' coefficient set),
    ``sigma_data``, ``sigma_min``/``sigma_max`` and may override :meth:`noise_labels`."""

    precond = "edm"
    #: whether the fused op's c_noise equals :meth:`noise_labels` (so the op's output can be used)
    op_noise_labels = True

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int, use_fp16: bool):
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.label_dim = label_dim
        self.use_fp16 = use_fp16
        self.sigma_data = SIGMA_DATA

    def noise_labels(self, sigma: torch.Tensor) -> torch.Tensor:
        """``c_noise`` ([N], fp32) for per-sample ``sigma`` ([N], fp32)."""
        return coefficients(sigma, self.precond, self.sigma_data)[3]

    def round_sigma(self, sigma):
        """Noise levels the network supports exactly (identity except for iDDPM)."""
        return torch.as_tensor(sigma)

    def forward(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None, *, net_input: torch.Tensor | None = None,
                force_fp32: bool = False, output: str = "decoder", **model_kwargs):
        """Denoised ``D(x, sigma)`` in fp32, shape of ``x``; with ``output="raw"`` the model's output F instead,
        in the dtype it ran in (``D = c_skip x + c_out F`` is left to the caller, e.g. the fused
        :func:`sidkernels.sid_generator_loss_raw` with ``precond=self.precond, sigma_data=self.sigma_data``);
        with ``output="encoder"`` SiDA's discriminator logits ``[N, 1, r, r]`` in fp32 (the decoder is skipped),
        with ``"both"`` ``(D, logits)`` (:mod:`sidkernels.networks.discriminator`).

        Args:
            x: noisy images ``[N, img_channels, R, R]`` (any float dtype; used in fp32).
            sigma: noise level: a number, a one-element tensor, or one value per sample (``[N]`` or
                ``[N, 1, 1, 1]``); treated as a constant (no gradient).
            class_labels: one-hot ``[N, label_dim]`` for conditional networks (ignored otherwise).
            augment_labels: ``[N, augment_dim]`` augmentation labels, or None.
            net_input: optional precomputed ``c_in(sigma) * x`` (e.g. from ``sidkernels.add_noise(...,
                return_net_input=True, precond=self.precond)``); skips the input-scaling pass.
            force_fp32: run the model in fp32 even when ``use_fp16`` is set.
            output: ``"decoder"``, ``"raw"``, ``"encoder"`` or ``"both"``.
        """
        if output not in WRAPPER_OUTPUTS:
            raise ValueError(f"output must be one of {WRAPPER_OUTPUTS}, got {output!r}")
        r = self.img_resolution
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != (self.img_channels, r, r):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [N, {self.img_channels}, {r}, {r}], got {shape}")
        n = x.shape[0]
        x = x.to(torch.float32)
        sigma = self._sigma(sigma, x)
        labels = self._labels(class_labels)
        dtype = torch.float16 if self.use_fp16 and not force_fp32 and x.device.type == "cuda" else torch.float32

        if net_input is None:
            net_input, c_noise = edm_precond_in(x, sigma, sigma_data=self.sigma_data, dtype=dtype,
                                                precond=self.precond)
            if not self.op_noise_labels:
                c_noise = self.noise_labels(sigma.expand(n))
        else:
            if net_input.shape != x.shape:
                raise ValueError(f"net_input must have the shape of x {tuple(x.shape)}, "
                                 f"got {tuple(net_input.shape)}")
            if not torch.is_autocast_enabled(x.device.type):  # under autocast the layers cast as they need
                net_input = net_input.to(dtype)
            c_noise = self.noise_labels(sigma.expand(n))
        if output in ("encoder", "both"):  # models without a discriminator head keep working for the denoiser
            model_kwargs["output"] = output
        F_x = self.model(net_input, c_noise, class_labels=labels, augment_labels=augment_labels, **model_kwargs)
        if output == "encoder":
            return F_x.float()
        if output == "raw":
            return self._model_output(F_x)
        F_x, logits = F_x if output == "both" else (F_x, None)
        D = edm_precond_out(x, self._model_output(F_x), sigma, sigma_data=self.sigma_data, precond=self.precond)
        return D if logits is None else (D, logits.float())

    def _model_output(self, F_x: torch.Tensor) -> torch.Tensor:
        return F_x

    @staticmethod
    def _sigma(sigma, x: torch.Tensor) -> torch.Tensor:
        """sigma as fp32 on x's device: 0-dim (shared) or ``[N]``."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        if sigma.numel() == 1:
            return sigma.reshape(())
        if sigma.numel() != x.shape[0]:
            raise ValueError(f"sigma must be a scalar or have one value per sample ({x.shape[0]}), "
                             f"got shape {tuple(sigma.shape)}")
        return sigma.reshape(-1)

    def _labels(self, class_labels):
        if not self.label_dim:
            return None
        if class_labels is None:
            raise ValueError(f"class_labels are required: the network is class-conditional "
                             f"(label_dim={self.label_dim}); pass one-hot labels [N, {self.label_dim}]")
        return class_labels.to(torch.float32).reshape(-1, self.label_dim)


class EDMPrecond(Preconditioner):
    """EDM: ``c_skip = sd^2/(s^2+sd^2)``, ``c_out = s sd/sqrt(s^2+sd^2)``, ``c_in = 1/sqrt(s^2+sd^2)``,
    ``c_noise = ln(s)/4``; supports ``[sigma_min, sigma_max]`` (default ``[0, inf)``)."""

    precond = "edm"

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 sigma_min: float = 0.0, sigma_max: float = float("inf"), sigma_data: float = SIGMA_DATA,
                 model_type: str = "DhariwalUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.sigma_data = sigma_data
        self.init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                                use_fp16=use_fp16, sigma_min=sigma_min, sigma_max=sigma_max,
                                sigma_data=sigma_data, model_type=model_type, **model_kwargs)
        self.model = build_model(model_type, img_resolution=img_resolution, in_channels=img_channels,
                                 out_channels=img_channels, label_dim=label_dim, **model_kwargs)


class VPPrecond(Preconditioner):
    """Variance preserving: ``c_skip = 1``, ``c_out = -s``, ``c_in = 1/sqrt(s^2+1)``,
    ``c_noise = (M-1) sigma_vp^-1(s)``; supports ``[sigma_vp(epsilon_t), sigma_vp(1)]``."""

    precond = "vp"

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 beta_d: float = VP_BETA_D, beta_min: float = VP_BETA_MIN, M: int = VP_M, epsilon_t: float = 1e-5,
                 model_type: str = "SongUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16)
        self.beta_d = beta_d
        self.beta_min = beta_min
        self.M = M
        self.epsilon_t = epsilon_t
        self.sigma_min = vp_sigma(epsilon_t, beta_d, beta_min)
        self.sigma_max = vp_sigma(1.0, beta_d, beta_min)
        self.op_noise_labels = (beta_d, beta_min, M) == (VP_BETA_D, VP_BETA_MIN, VP_M)
        self.init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                                use_fp16=use_fp16, beta_d=beta_d, beta_min=beta_min, M=M, epsilon_t=epsilon_t,
                                model_type=model_type, **model_kwargs)
        self.model = build_model(model_type, img_resolution=img_resolution, in_channels=img_channels,
                                 out_channels=img_channels, label_dim=label_dim, **model_kwargs)

    def noise_labels(self, sigma: torch.Tensor) -> torch.Tensor:
        return (self.M - 1) * vp_sigma_inv(sigma, self.beta_d, self.beta_min)


class VEPrecond(Preconditioner):
    """Variance exploding: ``c_skip = 1``, ``c_out = s``, ``c_in = 1``, ``c_noise = ln(s/2)``; supports
    ``[sigma_min, sigma_max]`` (default ``[0.02, 100]``)."""

    precond = "ve"

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 sigma_min: float = 0.02, sigma_max: float = 100.0, model_type: str = "SongUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                                use_fp16=use_fp16, sigma_min=sigma_min, sigma_max=sigma_max,
                                model_type=model_type, **model_kwargs)
        self.model = build_model(model_type, img_resolution=img_resolution, in_channels=img_channels,
                                 out_channels=img_channels, label_dim=label_dim, **model_kwargs)


def iddpm_sigmas(M: int, C_1: float, C_2: float) -> list[float]:
    """The iDDPM noise table ``u_0 > ... > u_M = 0``: ``u_{j-1} = sqrt((u_j^2 + 1) / max(a(j-1)/a(j), C_1) - 1)``
    with ``a(j) = sin^2(pi/2 * j / (M (1 + C_2)))``."""
    def alpha_bar(j):
        return math.sin(0.5 * math.pi * j / M / (C_2 + 1)) ** 2

    u = [0.0] * (M + 1)
    for j in range(M, 0, -1):
        u[j - 1] = math.sqrt((u[j] ** 2 + 1) / max(alpha_bar(j - 1) / alpha_bar(j), C_1) - 1)
    return u


class iDDPMPrecond(Preconditioner):
    """Improved DDPM: the VP scalings (``c_skip = 1``, ``c_out = -s``, ``c_in = 1/sqrt(s^2+1)``) with
    ``c_noise = M - 1 - argmin_j |s - u_j|`` over the buffer ``u`` (:func:`iddpm_sigmas`); the model predicts
    ``2 * img_channels`` channels of which the first ``img_channels`` are used."""

    precond = "vp"
    op_noise_labels = False

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 C_1: float = 0.001, C_2: float = 0.008, M: int = 1000, model_type: str = "DhariwalUNet",
                 **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16)
        self.C_1 = C_1
        self.C_2 = C_2
        self.M = M
        u = iddpm_sigmas(M, C_1, C_2)
        self.register_buffer("u", torch.tensor(u, dtype=torch.float32))
        self.sigma_min = float(np.float32(u[M - 1]))
        self.sigma_max = float(np.float32(u[0]))
        self.init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                                use_fp16=use_fp16, C_1=C_1, C_2=C_2, M=M, model_type=model_type, **model_kwargs)
        self.model = build_model(model_type, img_resolution=img_resolution, in_channels=img_channels,
                                 out_channels=2 * img_channels, label_dim=label_dim, **model_kwargs)

    def _nearest(self, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.to(device=self.u.device, dtype=torch.float32).reshape(-1, 1)
        return (s - self.u.reshape(1, -1)).abs().argmin(dim=1)

    def noise_labels(self, sigma: torch.Tensor) -> torch.Tensor:
        return (self.M - 1 - self._nearest(sigma)).to(device=sigma.device, dtype=torch.float32)

    def round_sigma(self, sigma):
        """Snap sigma to the nearest entry of ``u`` (keeps sigma's shape, dtype and device)."""
        sigma = torch.as_tensor(sigma)
        return self.u[self._nearest(sigma)].to(device=sigma.device, dtype=sigma.dtype).reshape(sigma.shape)

    def _model_output(self, F_x: torch.Tensor) -> torch.Tensor:
        return F_x[:, :self.img_channels]


PRECOND_CLASSES = {cls.__name__: cls for cls in (EDMPrecond, VPPrecond, VEPrecond, iDDPMPrecond)}
