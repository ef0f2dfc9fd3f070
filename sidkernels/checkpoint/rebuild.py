"""Build one of our networks from a class name, constructor keywords and a state dict read from a file.

Everything here is read from the file, so it is checked before it is used:

* the keywords must be plain values (None, bools, numbers, strings, or lists of at most
  :data:`MAX_LIST_LENGTH` of those; numpy scalars become Python numbers);
* keywords that set how much work construction does are checked against the weights first: a U-Net's
  ``len(channel_mult) * (num_blocks + 1)`` blocks cannot exceed the number of tensors in the file (every block
  holds several), and iDDPM's table size ``M`` must match its stored buffer ``u`` (``M + 1`` entries);
* the network is built on the meta device (nothing is allocated), any failure of its constructor is a
  :class:`CheckpointError`;
* the weights must match the architecture's names and shapes exactly, be floating point, and hold no more
  elements than their storage has (so a broadcast view cannot pose as a huge weight); then they are
  assigned with ``strict=True``.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from sidkernels.checkpoint.errors import CheckpointError, UnsafePickleError, describe
from sidkernels.networks.precond import MODEL_TYPES, PRECOND_CLASSES

NETWORK_CLASSES = {**PRECOND_CLASSES, **MODEL_TYPES}
MAX_LIST_LENGTH = 64
WEIGHT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
#: U-Net constructor defaults that bound the block count when a file does not pass them
_DEFAULT_LEVELS, _DEFAULT_BLOCKS = 4, 4
_IDDPM_DEFAULT_M = 1000

__all__ = ["CheckpointError", "NETWORK_CLASSES", "UnsafePickleError", "plain_value", "rebuild_network"]


def plain_value(value, where: str):
    """``value`` as a plain Python constructor argument (see the module docstring), or CheckpointError."""
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) in (list, tuple) and len(value) <= MAX_LIST_LENGTH:
        items = [v.item() if isinstance(v, (np.bool_, np.integer, np.floating)) else v for v in value]
        if all(v is None or type(v) in (bool, int, float, str) for v in items):
            return items
    raise CheckpointError(f"{where} is {describe(value)}; constructor arguments must be numbers, strings or "
                          f"lists of at most {MAX_LIST_LENGTH} of them")


def _check_build_cost(class_name: str, kwargs: Mapping, state_dict: Mapping, source: str) -> None:
    if "channel_mult" in kwargs or "num_blocks" in kwargs:
        levels = kwargs.get("channel_mult", [1] * _DEFAULT_LEVELS)
        blocks = kwargs.get("num_blocks", _DEFAULT_BLOCKS)
        if type(levels) is not list or type(blocks) is not int:
            raise CheckpointError(f"{source}: channel_mult must be a list and num_blocks an int")
        if len(levels) * (max(blocks, 0) + 1) > len(state_dict):
            raise CheckpointError(f"{source}: its configuration describes {len(levels)} levels of {blocks} blocks, "
                                  f"more than the {len(state_dict)} tensors in the file can hold")
    if class_name == "iDDPMPrecond":
        M, u = kwargs.get("M", _IDDPM_DEFAULT_M), state_dict.get("u")
        if type(M) is not int or not isinstance(u, torch.Tensor) or u.dim() != 1 or u.numel() != M + 1:
            raise CheckpointError(f"{source}: iDDPMPrecond's M={describe(M)} does not match its stored table u "
                                  f"({tuple(u.shape) if isinstance(u, torch.Tensor) else 'missing'})")


def build_network(class_name: str, kwargs: Mapping, source: str = "checkpoint") -> nn.Module:
    """Construct ``class_name(**kwargs)`` on the meta device (no init cost; weights come from the state)."""
    if class_name not in NETWORK_CLASSES:
        raise CheckpointError(f"{source}: network class {describe(class_name)} is not supported; "
                              f"supported: {sorted(NETWORK_CLASSES)}")
    try:
        with torch.device("meta"):
            return NETWORK_CLASSES[class_name](**kwargs)
    except Exception as err:  # the constructor is ours, its arguments are the file's: any failure is the file's
        raise CheckpointError(f"{source}: cannot build {class_name} from its constructor arguments "
                              f"{dict(kwargs)}: {type(err).__name__}: {str(err)[:300]}") from err


def _listing(names, limit: int = 8) -> str:
    names = list(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_weights(net: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Load ``state_dict`` into ``net`` (built on the meta device) by assignment, after checking that the
    names and shapes match exactly; a mismatch raises :class:`CheckpointError` listing the differences."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                   if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        parts = [f"{label}: {_listing(items)}" for label, items in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong_shape)) if items]
        raise CheckpointError(f"{source}: the weights do not match the {type(net).__name__} architecture "
                              f"built from its configuration; " + "; ".join(parts))
    for k, t in state_dict.items():
        if t.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(f"{source}: weight {k} is {t.dtype}; weights must be one of {WEIGHT_DTYPES}")
        if t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise CheckpointError(f"{source}: weight {k} has {t.numel()} elements but its storage holds only "
                                  f"{t.untyped_storage().nbytes() // t.element_size()}")
    try:
        net.load_state_dict(dict(state_dict), strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: cannot assign the weights: {str(err)[:300]}") from err
    return net.eval()


def rebuild_network(class_name: str, kwargs: Mapping, state_dict: Mapping[str, torch.Tensor],
                    source: str = "checkpoint") -> nn.Module:
    """``class_name(**kwargs)`` with the weights ``state_dict``, in eval mode; every check of the module
    docstring first."""
    kwargs = {k: plain_value(v, f"{source}: constructor argument {k!r}") for k, v in kwargs.items()}
    _check_build_cost(class_name, kwargs, state_dict, source)
    return load_weights(build_network(class_name, kwargs, source), state_dict, source)
