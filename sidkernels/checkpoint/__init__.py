"""Checkpoints: official EDM/SiD pickles and training states (read safely, without EDM's code) and our own
safetensors format.

Public API::

    load_checkpoint(path, *, key=None) -> nn.Module
    save_network(net, path) -> (safetensors path, json path)
    CheckpointError, ForbiddenGlobalError
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from sidkernels.checkpoint.official import load_official
from sidkernels.checkpoint.rebuild import CheckpointError
from sidkernels.checkpoint.safe_unpickler import ForbiddenGlobalError
from sidkernels.checkpoint.safetensors_io import load_network, save_network


def load_checkpoint(path, *, key: str | None = None) -> nn.Module:
    """Load a network from any supported checkpoint: on the CPU, in the stored dtype (fp32 for official
    checkpoints), in eval mode, with trainable parameters (call ``requires_grad_(False)`` for a frozen
    teacher).  Formats:

    * ``*.safetensors``: our format (:func:`save_network`);
    * an official EDM or SiD snapshot pickle (``edm-cifar10-32x32-uncond-vp.pkl``, ``network-snapshot-*.pkl``):
      the network under ``key`` (default ``"ema"``);
    * a SiD training state (``training-state-*.pt``): the network under ``key`` (default ``"G_ema"``; also
      ``"G"``, ``"fake_score"``).

    Pickles are read by a restricted unpickler that never imports or runs anything from the file; a pickle
    that names any other global raises :class:`ForbiddenGlobalError` (a ``pickle.UnpicklingError``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        if key is not None:
            raise ValueError("key selects a network inside a pickle; a .safetensors file holds exactly one")
        return load_network(path)
    return load_official(path, key=key)


__all__ = ["CheckpointError", "ForbiddenGlobalError", "load_checkpoint", "save_network"]
