"""sidkernels: fused kernels for Score identity Distillation of EDM diffusion models.

``import sidkernels`` loads the kernel library only (torch, triton, numpy): the fused ops of the registry
:data:`sidkernels.ops.OPS` as top-level functions (``sidkernels.add_noise``, ...; the README's API table), their
references (``sidkernels.ref``), the sigma samplers and the backend controls.  The applications resolve on first use and need the
``[train]`` extra: ``networks``, ``load_checkpoint``, ``sample_heun``, ``distill``, ``sign``, ``checkpoint``.
"""
import importlib

from sidkernels._backend import BACKENDS, get_backend, use_backend
from sidkernels._checks import set_value_checks, value_checks
from sidkernels.ops import OPS
from sidkernels.sigma import sample_sigma_lognormal, sample_sigma_sid

__version__ = "0.1.0"

globals().update({name: op.public for name, op in OPS.items()})

# name -> (module, attribute or None for the module itself), imported on first access
_LAZY = {
    "ref": ("sidkernels.ref", None),
    "cuda_ext": ("sidkernels.cuda_ext", None),
    "networks": ("sidkernels.networks", None),
    "checkpoint": ("sidkernels.checkpoint", None),
    "distill": ("sidkernels.distill", None),
    "sign": ("sidkernels.sign", None),
    "load_checkpoint": ("sidkernels.checkpoint", "load_checkpoint"),
    "sample_heun": ("sidkernels.sampler", "sample_heun"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'sidkernels' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


__all__ = ["BACKENDS", "OPS", "get_backend", "sample_sigma_lognormal", "sample_sigma_sid", "set_value_checks",
           "use_backend", "value_checks", *OPS, *_LAZY]
