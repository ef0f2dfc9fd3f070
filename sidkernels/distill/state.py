"""The training state: networks, optimisers, RNG states and counters in one safetensors file, written
atomically (temporary file in the same directory, then ``os.replace``), so an interrupted write never
leaves a file that could be loaded.

Tensors are stored under ``net/<name>/<key>``, ``opt/<name>/<param index>/<key>`` and ``rng/<name>``; the
networks' configs, optimiser hyper-parameters and counters go into the JSON metadata.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from sidkernels.checkpoint.errors import CheckpointError, refusing
from sidkernels.checkpoint.safetensors_io import _atomic_write, network_config, read_metadata, read_tensors

FORMAT = "sidkernels-training-state/1"
STATE_NAME = re.compile(r"training-state-(\d{9})\.safetensors$")


def state_path(run_dir, iteration: int) -> Path:
    return Path(run_dir) / f"training-state-{iteration:09d}.safetensors"


def latest_state(run_dir) -> Path | None:
    """The newest complete training state in ``run_dir`` (temporary files are never considered)."""
    found = sorted(p for p in Path(run_dir).glob("training-state-*.safetensors") if STATE_NAME.search(p.name))
    return found[-1] if found else None


def rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states["cpu"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def save_state(path, *, nets: dict, optimizers: dict, rng: dict, counters: dict, run_config: dict) -> Path:
    """Write one training state to ``path`` atomically."""
    tensors, meta = {}, {"format": FORMAT, "counters": counters, "run_config": run_config, "nets": {}, "opts": {}}
    for name, net in nets.items():
        meta["nets"][name] = network_config(net)
        for key, t in net.state_dict().items():
            tensors[f"net/{name}/{key}"] = t.detach().cpu().contiguous()
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        meta["opts"][name] = {"param_groups": sd["param_groups"], "scalars": {}}
        for idx, entry in sd["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"opt/{name}/{idx}/{key}"] = value.detach().cpu().contiguous()
                else:
                    meta["opts"][name]["scalars"][f"{idx}/{key}"] = value
    for name, t in rng.items():
        tensors[f"rng/{name}"] = t.cpu().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta)
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"sidkernels_state": text}))
    return path


def read_state(path):
    """``(tensors, metadata)`` of a training state; a damaged, truncated or foreign file raises CheckpointError."""
    with refusing(path):
        try:
            text, tensors = read_metadata(path).get("sidkernels_state"), read_tensors(path)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: not a readable training state ({e.__cause__ or e})") from e
        try:
            meta = json.loads(text) if text is not None else None
        except (ValueError, RecursionError) as e:
            raise CheckpointError(f"{path}: the training state's metadata is not valid JSON ({str(e)[:200]})") from e
        if type(meta) is not dict or meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a sidkernels training state (format {FORMAT!r})")
        if not all(type(meta.get(k)) is dict for k in ("counters", "run_config", "nets", "opts")):
            raise CheckpointError(f"{path}: the training state's metadata lacks counters/run_config/nets/opts")
        return tensors, meta


def load_net_state(net: torch.nn.Module, tensors: dict, name: str, source) -> None:
    prefix = f"net/{name}/"
    sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: network {name!r} does not match this run's architecture: {e}") from e


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict, meta: dict, name: str) -> None:
    entry = meta["opts"][name]
    state: dict[int, dict] = {}
    prefix = f"opt/{name}/"
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, field = key[len(prefix):].split("/", 1)
            state.setdefault(int(idx), {})[field] = value
    for key, value in entry["scalars"].items():
        idx, field = key.split("/", 1)
        state.setdefault(int(idx), {})[field] = value
    opt.load_state_dict({"state": state, "param_groups": entry["param_groups"]})
