"""Our checkpoint format: a ``.safetensors`` file of the state dict whose metadata carries the network's
JSON config, plus the same config as a ``.json`` file next to it (for people and tools).

Config: ``{"format": "sidkernels-network/1", "class_name": "EDMPrecond", "init_kwargs": {...}}``; the
constructor keywords are the wrapper's ``init_kwargs`` (JSON; ``sigma_max=inf`` is written as ``Infinity``).
Both files are written atomically (temporary file in the same directory, then ``os.replace``).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sidkernels.checkpoint.rebuild import CheckpointError, build_network, load_weights

FORMAT = "sidkernels-network/1"
CONFIG_KEY = "sidkernels_config"


def network_config(net: nn.Module) -> dict:
    """The JSON config that rebuilds ``net`` (a preconditioned network built by this library)."""
    init_kwargs = getattr(net, "init_kwargs", None)
    if not isinstance(init_kwargs, dict):
        raise TypeError(f"net must be a preconditioned network from sidkernels.networks (EDMPrecond, VPPrecond, "
                        f"VEPrecond, iDDPMPrecond), got {type(net).__name__}")
    return {"format": FORMAT, "class_name": type(net).__name__, "init_kwargs": json.loads(json.dumps(init_kwargs))}


def config_path(path) -> Path:
    """The JSON config file that accompanies ``path`` (``net.safetensors`` -> ``net.json``)."""
    return Path(path).with_suffix(".json")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_network(net: nn.Module, path) -> tuple[Path, Path]:
    """Write ``net`` to ``path`` (safetensors) and its config to :func:`config_path`; returns both paths."""
    path = Path(path)
    config = network_config(net)
    text = json.dumps(config, indent=2, sort_keys=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={CONFIG_KEY: text}))
    json_path = config_path(path)
    _atomic_write(json_path, lambda tmp: Path(tmp).write_text(text + "\n"))
    return path, json_path


def read_config(path) -> dict:
    """The config stored in the safetensors metadata (or, failing that, in the ``.json`` next to it)."""
    with safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get(CONFIG_KEY)
    if text is None and config_path(path).is_file():
        text = config_path(path).read_text()
    if text is None:
        raise CheckpointError(f"{path}: no sidkernels network config in the file's metadata and no "
                              f"{config_path(path).name} next to it")
    config = json.loads(text)
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported config format {config.get('format')!r} (expected {FORMAT!r})")
    return config


def load_network(path) -> nn.Module:
    """Rebuild the network saved by :func:`save_network` (eval mode)."""
    config = read_config(path)
    net = build_network(config["class_name"], config["init_kwargs"], str(path))
    return load_weights(net, load_file(str(path)), str(path))
