"""Named network configurations of the EDM teachers that SiD distils (docs/networks.md §3.3 and docs/sid.md §3).

Each preset is the keyword set EDM's ``train.py`` passes for that dataset, so ``build_preset(name)`` has the
official parameter names, shapes and counts:

==================  ===========================================  ===========
name                architecture                                 parameters
==================  ===========================================  ===========
``cifar10-uncond``  DDPM++ 32x32, [2,2,2], augment_dim 9         55,733,891
``cifar10-cond``    same, 10 classes                             55,735,299
``cifar10-ncsnpp``  NCSN++ 32x32, [2,2,2], augment_dim 9         56,397,827
``ffhq64``          DDPM++ 64x64, [1,2,2,2], augment_dim 9       61,805,571
``afhq64``          same as ffhq64                               61,805,571
``imagenet64``      ADM 64x64, 192 ch, [1,2,3,4], 1000 classes   295,899,267
==================  ===========================================  ===========

Dropout follows the SiD runs (CIFAR 0.13, FFHQ/AFHQ 0.05, ImageNet 0.10).  ``use_fp16`` is off: pass
``use_fp16=True`` for the official fp16 recipe, or run under bf16 autocast.  Overrides replace or extend the
keywords (e.g. ``dropout=0``, ``attention_impl="reference"``, ``model_channels=32`` for a small test net);
``precond="vp" | "ve" | "edm"`` picks the wrapper (default ``"edm"``).
"""
from __future__ import annotations

from sidkernels.networks.precond import EDMPrecond, VEPrecond, VPPrecond

_DDPMPP = dict(model_type="SongUNet", embedding_type="positional", encoder_type="standard",
               decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1], model_channels=128,
               channel_mult=[2, 2, 2])
_NCSNPP = dict(model_type="SongUNet", embedding_type="fourier", encoder_type="residual", decoder_type="standard",
               channel_mult_noise=2, resample_filter=[1, 3, 3, 1], model_channels=128, channel_mult=[2, 2, 2])
_ADM = dict(model_type="DhariwalUNet", model_channels=192, channel_mult=[1, 2, 3, 4])

PRESETS = {
    "cifar10-uncond": dict(img_resolution=32, img_channels=3, label_dim=0, augment_dim=9, dropout=0.13, **_DDPMPP),
    "cifar10-cond": dict(img_resolution=32, img_channels=3, label_dim=10, augment_dim=9, dropout=0.13, **_DDPMPP),
    "cifar10-ncsnpp": dict(img_resolution=32, img_channels=3, label_dim=0, augment_dim=9, dropout=0.13, **_NCSNPP),
    "ffhq64": dict(img_resolution=64, img_channels=3, label_dim=0, augment_dim=9, dropout=0.05,
                   **dict(_DDPMPP, channel_mult=[1, 2, 2, 2])),
    "afhq64": dict(img_resolution=64, img_channels=3, label_dim=0, augment_dim=9, dropout=0.05,
                   **dict(_DDPMPP, channel_mult=[1, 2, 2, 2])),
    "imagenet64": dict(img_resolution=64, img_channels=3, label_dim=1000, augment_dim=0, dropout=0.10, **_ADM),
}

WRAPPERS = {"edm": EDMPrecond, "vp": VPPrecond, "ve": VEPrecond}


def preset_kwargs(name: str) -> dict:
    """The constructor keywords of preset ``name`` (a copy)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset name {name!r}; choose one of {sorted(PRESETS)}")
    return {k: list(v) if isinstance(v, list) else v for k, v in PRESETS[name].items()}


def build_preset(name: str, *, precond: str = "edm", **overrides):
    """Build the preconditioned network of preset ``name`` with ``overrides`` applied."""
    kwargs = preset_kwargs(name)
    if precond not in WRAPPERS:
        raise ValueError(f"precond must be one of {tuple(WRAPPERS)}, got {precond!r}")
    kwargs.update(overrides)
    return WRAPPERS[precond](**kwargs)
