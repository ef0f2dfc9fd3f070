"""Official EDM / SiD checkpoints without EDM's code (SID.md 6).

* EDM snapshot ``.pkl``: ``dict(ema=<EDMPrecond>, loss_fn=..., augment_pipe=..., dataset_kwargs=...)``;
* SiD snapshot ``.pkl``: ``dict(ema=<EDMPrecond>)``;
* SiD training state ``.pt`` (``torch.save``): ``dict(fake_score=..., G=..., G_ema=..., *_optimizer_state=...)``.

Both are read with :mod:`~sidkernels.checkpoint.safe_unpickler` (nothing from the file is imported or run).
A network is a :class:`PersistentRecord`; we rebuild it from the record's constructor keywords
(``_init_kwargs``, with the top-level attributes ``use_fp16``/``sigma_*``/... taking precedence and
``num_blocks``/``attn_resolutions``/``channels_per_head`` inferred from the block structure when they were not
passed), then load the flattened tensors with ``strict=True``.

Flattening follows ``nn.Module.state_dict``: ``prefix + name`` for the non-None parameters, then the non-None
persistent buffers, then recursively ``prefix + child + "."`` for the children.
"""
from __future__ import annotations

import collections
import inspect
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sidkernels.checkpoint import safe_unpickler
from sidkernels.checkpoint.rebuild import NETWORK_CLASSES, CheckpointError, build_network, load_weights
from sidkernels.checkpoint.safe_unpickler import ContainerRecord, PersistentRecord
from sidkernels.networks.precond import MODEL_TYPES

#: keys tried, in order, when no ``key`` is given: EDM/SiD snapshots, then SiD training states
DEFAULT_KEYS = ("ema", "G_ema")
#: attributes of a top-level wrapper that reflect how it actually ran; they override ``_init_kwargs``
_WRAPPER_ATTRIBUTES = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min", "sigma_max",
                       "sigma_data")
_BLOCK_NAME = re.compile(r"^(\d+)x(\d+)_block(\d+)$")


def read_checkpoint_object(path) -> Any:
    """Unpickle ``path`` safely: a ``torch.save`` archive (zip, or a ``.pt``/``.pth`` file) through
    ``torch.load(weights_only=False, pickle_module=safe_unpickler)``, anything else as a plain pickle."""
    path = Path(path)
    if zipfile.is_zipfile(path) or path.suffix in (".pt", ".pth"):
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_unpickler)
    with open(path, "rb") as f:
        return safe_unpickler.load(f)


def _state(obj, where: str) -> dict:
    if isinstance(obj, (PersistentRecord, ContainerRecord)):
        return obj.state
    raise CheckpointError(f"{where}: expected a pickled module, found {type(obj).__name__}")


def _plain(value):
    """Constructor keywords as plain Python values (numpy scalars -> numbers, tuples -> lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def flatten_state(obj, prefix: str = "") -> "collections.OrderedDict[str, torch.Tensor]":
    """The state dict of a pickled module record (keys and order as ``nn.Module.state_dict``)."""
    state = _state(obj, prefix or "<root>")
    out = collections.OrderedDict()
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    tensors = list(state.get("_parameters", {}).items())
    tensors += [(k, v) for k, v in state.get("_buffers", {}).items() if k not in non_persistent]
    for name, t in tensors:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{prefix}{name}: expected a tensor, found {type(t).__name__}")
        out[prefix + name] = t.detach()
    for name, child in state.get("_modules", {}).items():
        if child is not None:
            out.update(flatten_state(child, f"{prefix}{name}."))
    return out


def _children(obj) -> dict:
    return _state(obj, "module").get("_modules", {})


def infer_unet_layout(model: PersistentRecord) -> dict:
    """``num_blocks``, ``attn_resolutions`` and (ADM) ``channels_per_head`` read off a U-Net record's encoder:
    the block count at the first resolution, the resolutions whose encoder blocks have a ``qkv`` conv, and
    ``out_channels // num_heads`` of the attention blocks."""
    enc = _children(model).get("enc")
    if enc is None:
        return {}
    blocks = {}
    for name, block in _children(enc).items():
        m = _BLOCK_NAME.match(name)
        if m:
            blocks[(int(m.group(1)), int(m.group(3)))] = block
    if not blocks:
        return {}
    top = max(res for res, _ in blocks)
    layout = dict(num_blocks=1 + max(idx for res, idx in blocks if res == top))
    attn = {res: block for (res, _), block in blocks.items() if _children(block).get("qkv") is not None}
    layout["attn_resolutions"] = sorted(attn, reverse=True)
    if model.class_name == "DhariwalUNet":
        per_head = {int(b.state["out_channels"]) // int(b.state["num_heads"]) for b in attn.values()
                    if b.state.get("num_heads") and b.state.get("out_channels")}
        if len(per_head) == 1:
            layout["channels_per_head"] = per_head.pop()
    return layout


def constructor_kwargs(record: PersistentRecord, source: str = "checkpoint") -> dict:
    """Keywords that rebuild ``record`` with our class of the same name (SID.md 6.3)."""
    cls = NETWORK_CLASSES.get(record.class_name)
    if cls is None:
        raise CheckpointError(f"{source}: network class {record.class_name!r} is not supported; "
                              f"supported: {sorted(NETWORK_CLASSES)}")
    state = record.state
    params = [p for p in inspect.signature(cls).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    args = tuple(state.get("_init_args") or ())
    if len(args) > len(params):
        raise CheckpointError(f"{source}: {record.class_name} was built with {len(args)} positional arguments")
    kwargs = {p.name: _plain(a) for p, a in zip(params, args)}
    kwargs.update({k: _plain(v) for k, v in dict(state.get("_init_kwargs") or {}).items()})
    names = {p.name for p in params}
    kwargs.update({k: _plain(state[k]) for k in _WRAPPER_ATTRIBUTES if k in state and k in names})

    model = _children(record).get("model") if record.class_name not in MODEL_TYPES else record
    if isinstance(model, PersistentRecord):
        kwargs.update({k: v for k, v in infer_unet_layout(model).items() if k not in kwargs})
    return kwargs


def select_network(obj, key: str | None, source: str) -> PersistentRecord:
    """The network record stored under ``key`` (default: the first of :data:`DEFAULT_KEYS` present)."""
    if isinstance(obj, PersistentRecord) and key is None:
        return obj
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a dict of networks, found {type(obj).__name__}")
    networks = [k for k, v in obj.items() if isinstance(v, PersistentRecord)]
    if key is None:
        key = next((k for k in DEFAULT_KEYS if k in obj), None)
        if key is None:
            raise CheckpointError(f"{source}: no network under {DEFAULT_KEYS}; pass key= one of {networks}")
    if not isinstance(obj.get(key), PersistentRecord):
        raise CheckpointError(f"{source}: no network under key {key!r}; networks in the file: {networks}")
    return obj[key]


def load_official(path, key: str | None = None) -> nn.Module:
    """Our network, rebuilt from an EDM/SiD ``.pkl`` or a SiD training-state ``.pt`` (eval mode, fp32)."""
    source = str(path)
    record = select_network(read_checkpoint_object(path), key, source)
    net = build_network(record.class_name, constructor_kwargs(record, source), source)
    return load_weights(net, flatten_state(record), source)
