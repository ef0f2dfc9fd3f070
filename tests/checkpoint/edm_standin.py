"""Test fixtures in EDM's persistence pickle format, written without EDM's code (docs/checkpoint-formats.md, "Formats", and docs/networks.md §6).

While pickling, stand-in modules ``torch_utils.persistence`` (with a ``_reconstruct_persistent_obj``
function) and ``dnnlib.util`` (with ``EasyDict``) are registered, and every network module of ours whose
class has an official counterpart is reduced to ``(_reconstruct_persistent_obj, (meta,), None)`` with::

    meta = {"type": "class", "version": 6, "module_src": PLACEHOLDER_SRC, "class_name": ..., "state": ...}

``state`` holds the nn.Module fields, the official plain attributes of that class (``skip_scale`` as a numpy
float64, as EDM stores it), ``_init_args = ()`` and ``_init_kwargs`` (the wrapper's and the model's keywords;
empty for inner layers, which the loader never reads).  ModuleDicts pickle normally.  The placeholder source
is never EDM's: the loader must not need (or run) it.
"""
from __future__ import annotations

import contextlib
import io
import pickle
import sys
import types

import numpy as np
import torch
from torch import nn

PLACEHOLDER_SRC = "# placeholder for the pickled module source; a safe loader never executes it\n"

MODULE_FIELDS = tuple(nn.Module().__dict__)
_WRAPPER = ("img_resolution", "img_channels", "label_dim", "use_fp16")
OFFICIAL_ATTRIBUTES = {
    "EDMPrecond": _WRAPPER + ("sigma_min", "sigma_max", "sigma_data"),
    "VPPrecond": _WRAPPER + ("beta_d", "beta_min", "M", "epsilon_t", "sigma_min", "sigma_max"),
    "VEPrecond": _WRAPPER + ("sigma_min", "sigma_max"),
    "iDDPMPrecond": _WRAPPER + ("C_1", "C_2", "M", "sigma_min", "sigma_max"),
    "SongUNet": ("label_dropout",),
    "DhariwalUNet": ("label_dropout",),
    "UNetBlock": ("in_channels", "out_channels", "emb_channels", "num_heads", "dropout", "skip_scale",
                  "adaptive_scale"),
    "Conv2d": ("in_channels", "out_channels", "up", "down", "fused_resample"),
    "GroupNorm": ("num_groups", "eps"),
    "Linear": ("in_features", "out_features"),
    "PositionalEmbedding": ("num_channels", "max_positions", "endpoint"),
    "FourierEmbedding": (),
}
_PRECOND_ONLY = {"use_fp16", "sigma_min", "sigma_max", "sigma_data", "model_type", "beta_d", "beta_min", "M",
                 "epsilon_t", "C_1", "C_2", "img_channels"}


class StandinObject:
    """A non-network persistent object (e.g. ``EDMLoss``): pickled as a record of its ``__dict__``."""

    def __init__(self, class_name: str, **attributes):
        self.class_name = class_name
        self.attributes = attributes


def _reconstruct_persistent_obj(meta):  # the stand-in's name and module are what the pickle records
    raise AssertionError("the stand-in reconstruct function must never be called by the loader")


class EasyDict(dict):
    pass


@contextlib.contextmanager
def standin_modules():
    """Register ``torch_utils.persistence`` and ``dnnlib.util`` stand-ins for the duration of a dump."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")
    _reconstruct_persistent_obj.__module__ = persistence.__name__
    EasyDict.__module__ = util.__name__
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util.EasyDict = EasyDict
    added = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
             "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    assert not set(added) & set(sys.modules), "real EDM modules are importable; the fixture needs a clean env"
    sys.modules.update(added)
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _model_kwargs(wrapper_kwargs: dict, out_channels: int) -> dict:
    kwargs = {k: v for k, v in wrapper_kwargs.items() if k not in _PRECOND_ONLY}
    return dict(kwargs, in_channels=wrapper_kwargs["img_channels"], out_channels=out_channels)


class _Pickler(pickle.Pickler):
    drop_kwargs: tuple = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._kwargs_by_id = {}  # id(module) -> its _init_kwargs (wrappers and their model)

    def reducer_override(self, obj):
        if isinstance(obj, StandinObject):
            return _record(obj.class_name, dict(obj.attributes))
        name = type(obj).__name__
        if not isinstance(obj, nn.Module) or name not in OFFICIAL_ATTRIBUTES:
            return NotImplemented
        state = {k: obj.__dict__[k] for k in MODULE_FIELDS if k in obj.__dict__}
        state.update({k: getattr(obj, k) for k in OFFICIAL_ATTRIBUTES[name]})
        if name == "UNetBlock":
            state["skip_scale"] = np.float64(state["skip_scale"])
        init_kwargs = self._kwargs_by_id.get(id(obj), {})
        if hasattr(obj, "init_kwargs"):
            init_kwargs = dict(obj.init_kwargs)
            self._kwargs_by_id[id(obj.model)] = _model_kwargs(init_kwargs, obj.model.out_channels)
        state["_init_args"] = ()
        state["_init_kwargs"] = {k: v for k, v in init_kwargs.items() if k not in self.drop_kwargs}
        return _record(name, state)


def _record(class_name: str, state: dict):
    meta = dict(type="class", version=6, module_src=PLACEHOLDER_SRC, class_name=class_name, state=state)
    return _reconstruct_persistent_obj, (meta,), None


def _pickler(drop_kwargs):
    return type("StandinPickler", (_Pickler,), {"drop_kwargs": tuple(drop_kwargs)})


def dumps_edm_pickle(obj, drop_kwargs=("num_blocks", "attn_resolutions")) -> bytes:
    """``pickle.dump`` (protocol 4) in the persistence format, like EDM/SiD ``.pkl`` snapshots.

    ``drop_kwargs`` are left out of every ``_init_kwargs``, as EDM leaves out constructor defaults that were
    not passed (docs/networks.md §6), so the loader has to infer them.
    """
    buf = io.BytesIO()
    with standin_modules():
        _pickler(drop_kwargs)(buf, protocol=4).dump(obj)
    return buf.getvalue()


def save_training_state(obj, path, drop_kwargs=("num_blocks", "attn_resolutions")) -> None:
    """``torch.save`` (zip, pickle protocol 2) in the persistence format, like SiD's training states."""
    module = types.SimpleNamespace(__name__="standin_pickle", Pickler=_pickler(drop_kwargs))
    with standin_modules():
        torch.save(obj, path, pickle_module=module, pickle_protocol=2)
