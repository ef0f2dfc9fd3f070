"""Checkpoints: official EDM/SiD pickles and training states (read safely, without EDM's code) and our own
safetensors format.

Public API::

    load_checkpoint(path, *, key=None) -> nn.Module
    save_network(net, path) -> (safetensors path, json path)
    CheckpointError, UnsafePickleError, ForbiddenGlobalError, UnexpectedCheckpointError

What the readers guarantee for any file, however hostile, and how that is tested: docs/checkpoint-formats.md.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from sidkernels.checkpoint.errors import (CheckpointError, ForbiddenGlobalError, UnexpectedCheckpointError,
                                          UnsafePickleError, refusing)
from sidkernels.checkpoint.official import load_official
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

    Whatever the file holds, this either returns the network or raises :class:`CheckpointError` saying what was
    refused and why; nothing from the file is imported or run, and the process is left as it was (no module,
    function or global setting changed, no random numbers drawn).  Pickles run on our own pickle interpreter
    with a fixed table of names (:mod:`~sidkernels.checkpoint.safe_unpickler`); a name off the table raises
    :class:`ForbiddenGlobalError`, any other refusal inside a pickle :class:`UnsafePickleError` (both also
    ``pickle.UnpicklingError``).  A failure none of the checks anticipated is still a CheckpointError
    (:class:`UnexpectedCheckpointError`).  A missing file raises ``FileNotFoundError``; ``key`` with a
    ``.safetensors`` file, ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        if key is not None:
            raise ValueError("key selects a network inside a pickle; a .safetensors file holds exactly one")
        with refusing(path):
            return load_network(path)
    with refusing(path):
        return load_official(path, key=key)


__all__ = ["CheckpointError", "ForbiddenGlobalError", "UnexpectedCheckpointError", "UnsafePickleError",
           "load_checkpoint", "save_network"]
