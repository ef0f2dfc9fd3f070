"""Our checkpoint format: a ``.safetensors`` file of the state dict whose metadata carries the network's
JSON config, plus the same config as a ``.json`` file next to it (for people and tools).

Config: ``{"format": "sidkernels-network/1", "class_name": "EDMPrecond", "init_kwargs": {...}}``; the
constructor keywords are the wrapper's ``init_kwargs`` (JSON; ``sigma_max=inf`` is written as ``Infinity``).
Both files are written atomically (temporary file in the same directory, then ``os.replace``).

Reading uses the safetensors library, which checks the header against the file (header length, JSON,
dtypes, offsets that tile the data exactly, shapes that fit); its errors, and a config that is not what
:func:`network_config` writes, become :class:`CheckpointError`; the network is then rebuilt by
:func:`~sidkernels.checkpoint.rebuild.rebuild_network` with all its checks.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sidkernels.checkpoint.errors import CheckpointError, describe
from sidkernels.checkpoint.rebuild import rebuild_network

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


def read_metadata(path) -> dict:
    """The string metadata of a safetensors file; a damaged file raises CheckpointError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except SafetensorError as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(err)[:300]})") from err


def read_tensors(path) -> dict:
    """The tensors of a safetensors file, on the CPU; a damaged file raises CheckpointError."""
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(err)[:300]})") from err


def parse_config(text, source) -> dict:
    """A network config (the JSON text :func:`network_config` writes), checked field by field."""
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"{source}: the network config is not valid JSON ({str(err)[:200]})") from err
    if type(config) is not dict:
        raise CheckpointError(f"{source}: the network config must be a JSON object, found {describe(config)}")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{source}: unsupported config format {describe(config.get('format'))} "
                              f"(expected {FORMAT!r})")
    if type(config.get("class_name")) is not str or type(config.get("init_kwargs")) is not dict:
        raise CheckpointError(f"{source}: the network config needs a class_name string and an init_kwargs object")
    return config


def read_config(path) -> dict:
    """The config stored in the safetensors metadata (or, failing that, in the ``.json`` next to it)."""
    text = read_metadata(path).get(CONFIG_KEY)
    if text is None and config_path(path).is_file():
        try:
            text = config_path(path).read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{config_path(path)}: unreadable ({err})") from err
    if text is None:
        raise CheckpointError(f"{path}: no sidkernels network config in the file's metadata and no "
                              f"{config_path(path).name} next to it")
    return parse_config(text, path)


def load_network(path) -> nn.Module:
    """Rebuild the network saved by :func:`save_network` (eval mode)."""
    config = read_config(path)
    return rebuild_network(config["class_name"], config["init_kwargs"], read_tensors(path), str(path))
