"""Official EDM / SiD checkpoints without EDM's code (docs/checkpoint-formats.md and docs/networks.md §6).

* EDM snapshot ``.pkl``: ``dict(ema=<EDMPrecond>, loss_fn=..., augment_pipe=..., dataset_kwargs=...)``;
* SiD snapshot ``.pkl``: ``dict(ema=<EDMPrecond>)``;
* SiD training state ``.pt`` (``torch.save``): ``dict(fake_score=..., G=..., G_ema=..., *_optimizer_state=...)``.

Both are read with :mod:`~sidkernels.checkpoint.safe_unpickler` (nothing from the file is imported or run;
the training state's zip archive by :mod:`~sidkernels.checkpoint.torch_archive`).
A network is a :class:`PersistentRecord`; we rebuild it from the record's constructor keywords
(``_init_kwargs``, with the top-level attributes ``use_fp16``/``sigma_*``/... taking precedence and
``num_blocks``/``attn_resolutions``/``channels_per_head`` inferred from the block structure when they were not
passed), then load the flattened tensors with ``strict=True`` (:func:`~sidkernels.checkpoint.rebuild.rebuild_network`,
which checks the keywords and weights first).

Flattening follows ``nn.Module.state_dict``: ``prefix + name`` for the non-None parameters, then the non-None
persistent buffers, then recursively ``prefix + child + "."`` for the children.
"""
from __future__ import annotations

import collections
import inspect
import re
from typing import Any

import torch
from torch import nn

from sidkernels.checkpoint import safe_unpickler
from sidkernels.checkpoint.errors import CheckpointError, describe, refusing
from sidkernels.checkpoint.rebuild import NETWORK_CLASSES, plain_value, rebuild_network
from sidkernels.checkpoint.safe_unpickler import ContainerRecord, PersistentRecord
from sidkernels.checkpoint.torch_archive import read_torch_archive
from sidkernels.networks.precond import MODEL_TYPES

#: keys tried, in order, when no ``key`` is given: EDM/SiD snapshots, then SiD training states
DEFAULT_KEYS = ("ema", "G_ema")
#: attributes of a top-level wrapper that reflect how it actually ran; they override ``_init_kwargs``
_WRAPPER_ATTRIBUTES = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min", "sigma_max",
                       "sigma_data")
_BLOCK_NAME = re.compile(r"^(\d{1,9})x(\d{1,9})_block(\d{1,9})$")
#: deepest module nesting accepted (EDM's networks nest 5 deep)
MAX_MODULE_DEPTH = 32


def read_checkpoint_object(path) -> Any:
    """Unpickle ``path`` safely: a ``torch.save`` zip archive (it starts with ``PK``) through
    :func:`~sidkernels.checkpoint.torch_archive.read_torch_archive`, anything else as a plain pickle."""
    with refusing(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"PK":
            return read_torch_archive(path)
        return safe_unpickler.load_file(path)


def _state(obj, where: str) -> dict:
    """The state dict of a pickled module record."""
    if isinstance(obj, (PersistentRecord, ContainerRecord)) and type(obj.state) is dict:
        return obj.state
    raise CheckpointError(f"{where}: expected a pickled module, found {describe(obj)}")


def _named(state: dict, field: str, where: str) -> dict:
    """``state[field]``: a dict with string keys (absent or None: empty)."""
    value = state.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(type(k) is str for k in value):
        raise CheckpointError(f"{where}.{field}: expected a dict with string keys, found {describe(value)}")
    return value


def flatten_state(obj, prefix: str = "", source: str = "checkpoint",
                  _seen: set | None = None) -> "collections.OrderedDict[str, torch.Tensor]":
    """The state dict of a pickled module record (keys and order as ``nn.Module.state_dict``).  Each record
    may appear once in the tree (a shared or cyclic module is refused), at most :data:`MAX_MODULE_DEPTH` deep."""
    where = f"{source}: {prefix[:-1] or '<root>'}"
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        raise CheckpointError(f"{where}: a module appears twice in the module tree (shared or cyclic)")
    if prefix.count(".") > MAX_MODULE_DEPTH:
        raise CheckpointError(f"{where}: modules nest more than {MAX_MODULE_DEPTH} deep")
    seen.add(id(obj))
    state = _state(obj, where)
    non_persistent = state.get("_non_persistent_buffers_set")
    non_persistent = set() if non_persistent is None else non_persistent
    if type(non_persistent) not in (set, frozenset):  # sets from the pickle hold only str/int/bytes/None
        raise CheckpointError(f"{where}._non_persistent_buffers_set: expected a set, found {describe(non_persistent)}")
    out = collections.OrderedDict()
    tensors = list(_named(state, "_parameters", where).items())
    tensors += [(k, v) for k, v in _named(state, "_buffers", where).items() if k not in non_persistent]
    for name, t in tensors:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{source}: {prefix}{name}: expected a tensor, found {describe(t)}")
        out[prefix + name] = t.detach()
    for name, child in _named(state, "_modules", where).items():
        if child is not None:
            out.update(flatten_state(child, f"{prefix}{name}.", source, seen))
    return out


def _children(obj, where: str = "module") -> dict:
    return _named(_state(obj, where), "_modules", where)


def _count(value) -> int | None:
    value = plain_value(value, "count") if value is not None else None
    return value if type(value) is int and value > 0 else None


def infer_unet_layout(model: PersistentRecord) -> dict:
    """``num_blocks``, ``attn_resolutions`` and (ADM) ``channels_per_head`` read off a U-Net record's encoder:
    the block count at the first resolution, the resolutions whose encoder blocks have a ``qkv`` conv, and
    ``out_channels // num_heads`` of the attention blocks."""
    enc = _children(model, model.class_name).get("enc")
    if enc is None:
        return {}
    blocks = {}
    for name, block in _children(enc, "enc").items():
        m = _BLOCK_NAME.match(name)
        if m and block is not None:
            blocks[(int(m.group(1)), int(m.group(3)))] = block
    if not blocks:
        return {}
    top = max(res for res, _ in blocks)
    layout = dict(num_blocks=1 + max(idx for res, idx in blocks if res == top))
    attn = {res: block for (res, _), block in blocks.items() if _children(block, "block").get("qkv") is not None}
    layout["attn_resolutions"] = sorted(attn, reverse=True)
    if model.class_name == "DhariwalUNet":
        per_head = set()
        for block in attn.values():
            heads, channels = (_count(_state(block, "block").get(k)) for k in ("num_heads", "out_channels"))
            if heads and channels:
                per_head.add(channels // heads)
        if len(per_head) == 1:
            layout["channels_per_head"] = per_head.pop()
    return layout


def constructor_kwargs(record: PersistentRecord, source: str = "checkpoint") -> dict:
    """Keywords that rebuild ``record`` with our class of the same name (docs/networks.md §6)."""
    cls = NETWORK_CLASSES.get(record.class_name)
    if cls is None:
        raise CheckpointError(f"{source}: network class {record.class_name!r} is not supported; "
                              f"supported: {sorted(NETWORK_CLASSES)}")
    state = _state(record, record.class_name)
    params = [p for p in inspect.signature(cls).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    args = state.get("_init_args")
    args = () if args is None else args
    if type(args) not in (tuple, list):
        raise CheckpointError(f"{source}: _init_args must be a tuple, found {describe(args)}")
    if len(args) > len(params):
        raise CheckpointError(f"{source}: {record.class_name} was built with {len(args)} positional arguments")

    def plain(name, value):
        return plain_value(value, f"{source}: constructor argument {name!r}")

    kwargs = {p.name: plain(p.name, a) for p, a in zip(params, args)}
    kwargs.update({k: plain(k, v) for k, v in _named(state, "_init_kwargs", source).items()})
    names = {p.name for p in params}
    kwargs.update({k: plain(k, state[k]) for k in _WRAPPER_ATTRIBUTES if k in state and k in names})

    model = _children(record, source).get("model") if record.class_name not in MODEL_TYPES else record
    if isinstance(model, PersistentRecord):
        kwargs.update({k: v for k, v in infer_unet_layout(model).items() if k not in kwargs})
    return kwargs


def select_network(obj, key: str | None, source: str) -> PersistentRecord:
    """The network record stored under ``key`` (default: the first of :data:`DEFAULT_KEYS` present)."""
    if isinstance(obj, PersistentRecord) and key is None:
        return obj
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a dict of networks, found {describe(obj)}")
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
    return rebuild_network(record.class_name, constructor_kwargs(record, source), flatten_state(record, source=source),
                           source)
