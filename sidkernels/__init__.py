"""sidkernels: fused kernels for Score identity Distillation of EDM diffusion models.

Public API::

    add_noise, edm_precond_in, edm_precond_out, sid_generator_loss, fake_score_loss, sample_distance,
    sample_sigma_sid, sample_sigma_lognormal, use_backend, get_backend, set_value_checks,
    networks, load_checkpoint, sample_heun, distill (the SiD trainer, imported on use)
"""
from sidkernels import networks
from sidkernels._backend import BACKENDS, get_backend, use_backend
from sidkernels._checks import set_value_checks
from sidkernels.checkpoint import load_checkpoint
from sidkernels.functional import (add_noise, edm_precond_in, edm_precond_out, fake_score_loss, sample_distance,
                                  sid_generator_loss)
from sidkernels.sampler import sample_heun
from sidkernels.sigma import sample_sigma_lognormal, sample_sigma_sid

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "add_noise", "edm_precond_in", "edm_precond_out", "fake_score_loss", "get_backend",
    "load_checkpoint", "networks", "sample_distance", "sample_heun", "sample_sigma_lognormal", "sample_sigma_sid",
    "set_value_checks", "sid_generator_loss", "use_backend",
]
