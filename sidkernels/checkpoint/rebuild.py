"""Build one of our networks from a class name and constructor keywords, then load a state dict into it
with ``strict=True``, reporting architecture mismatches clearly."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from sidkernels.networks.precond import MODEL_TYPES, PRECOND_CLASSES

NETWORK_CLASSES = {**PRECOND_CLASSES, **MODEL_TYPES}


class CheckpointError(ValueError):
    """The checkpoint cannot be turned into one of our networks (unknown class, wrong architecture, ...)."""


def build_network(class_name: str, kwargs: Mapping, source: str = "checkpoint") -> nn.Module:
    """Construct ``class_name(**kwargs)`` on the meta device (no init cost; weights come from the state)."""
    if class_name not in NETWORK_CLASSES:
        raise CheckpointError(f"{source}: network class {class_name!r} is not supported; "
                              f"supported: {sorted(NETWORK_CLASSES)}")
    try:
        with torch.device("meta"):
            return NETWORK_CLASSES[class_name](**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: cannot build {class_name} from its constructor arguments "
                              f"{dict(kwargs)}: {err}") from err


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
    net.load_state_dict(dict(state_dict), strict=True, assign=True)
    return net.eval()
