"""The training state, the second stage of a distillation run: what a run changes and saves.

:class:`TrainingState` holds the one-step generator G, the fake score, G_ema, their optimisers and the
counters; it starts from the teacher provider's network and saves to, and restores from, one safetensors file
written atomically (temporary file in the same directory, then ``os.replace``), so an interrupted write never
leaves a file that could be loaded.  Old states beyond the newest few are pruned.

Tensors are stored under ``net/<name>/<key>``, ``opt/<name>/<param index>/<key>`` and (optionally) ``rng/<name>``;
the networks' configs, optimiser hyper-parameters and counters go into the JSON metadata.  Restored optimiser
moments take their parameter's memory layout (a channels_last weight gets channels_last moments: CUDA's
fused Adam refuses mixed layouts).
"""
from __future__ import annotations

import copy
import dataclasses
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


def save_state(path, *, nets: dict, optimizers: dict, counters: dict, run_config: dict, rng: dict | None = None
               ) -> Path:
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
    for name, t in (rng or {}).items():
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
    if isinstance(opt, torch.optim.Optimizer):  # (FSDP's loader takes the plain state dict and lays it out itself)
        _moments_in_parameter_layout(opt)


def _moments_in_parameter_layout(opt: torch.optim.Optimizer) -> None:
    """Each moment in its parameter's memory layout (fused Adam refuses a NCHW moment beside a channels_last
    weight; the file stores them contiguous)."""
    for param in (p for group in opt.param_groups for p in group["params"]):
        moments = opt.state.get(param, {})
        for field, value in moments.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                moments[field] = torch.empty_like(param, dtype=value.dtype).copy_(value)  # the parameter's layout


def prune_states(run_dir, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` training states of ``run_dir``; returns the deleted paths."""
    found = sorted(p for p in Path(run_dir).glob("training-state-*.safetensors") if STATE_NAME.search(p.name))
    doomed = found[:-keep] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


NETWORKS = ("G", "fake", "G_ema")


def adam(params, *, lr: float, betas: tuple[float, float], eps: float, fused: bool,
         capturable: bool = False) -> torch.optim.Adam:
    """Adam, fused (one kernel for all parameters) or foreach; ``capturable`` keeps its step counters on the
    device (CUDA graphs, no host sync per step)."""
    impl = dict(fused=True) if fused else dict(foreach=True)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, capturable=capturable, **impl)


@dataclasses.dataclass
class TrainingState:
    """G, the fake score, G_ema (copies of the teacher's network at the start), their Adam optimisers and the
    run's counters: ``iteration``, ``cur_nimg`` (generator-update images seen) and the teacher's metrics."""
    G: torch.nn.Module
    fake: torch.nn.Module
    G_ema: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_fake: torch.optim.Optimizer
    iteration: int = 0
    cur_nimg: int = 0
    teacher_metrics: dict | None = None

    @classmethod
    def start(cls, init: torch.nn.Module, *, lr: float, glr: float, g_beta1: float, eps: float, fused_adam: bool,
              capturable: bool = False, memory_format: torch.memory_format = torch.contiguous_format
              ) -> "TrainingState":
        """Three copies of ``init`` in ``memory_format`` with fresh optimisers: the fake score's Adam with
        betas (0, 0.999) and learning rate ``lr``, G's with (``g_beta1``, 0.999) and ``glr``."""
        G, fake, G_ema = (copy.deepcopy(init).to(memory_format=memory_format) for _ in NETWORKS)
        opt_fake = adam(fake.parameters(), lr=lr, betas=(0.0, 0.999), eps=eps, fused=fused_adam, capturable=capturable)
        opt_G = adam(G.parameters(), lr=glr, betas=(g_beta1, 0.999), eps=eps, fused=fused_adam, capturable=capturable)
        return cls(G=G, fake=fake, G_ema=G_ema, opt_G=opt_G, opt_fake=opt_fake)

    def save(self, path, *, run_config: dict, extra: dict | None = None) -> Path:
        """Write the state to ``path`` atomically (``extra``: more counters, e.g. the world size)."""
        counters = {"iteration": self.iteration, "cur_nimg": self.cur_nimg, "teacher_metrics": self.teacher_metrics,
                    **(extra or {})}
        return save_state(path, nets={"G": self.G, "fake": self.fake, "G_ema": self.G_ema},
                          optimizers={"G": self.opt_G, "fake": self.opt_fake}, counters=counters,
                          run_config=run_config)

    def restore(self, path) -> dict:
        """Load the networks, optimisers and counters of the state at ``path``; returns its counters."""
        tensors, meta = read_state(path)
        for name in NETWORKS:
            load_net_state(getattr(self, name), tensors, name, path)
        load_optimizer_state(self.opt_G, tensors, meta, "G")
        load_optimizer_state(self.opt_fake, tensors, meta, "fake")
        counters = meta["counters"]
        self.iteration, self.cur_nimg = counters["iteration"], counters["cur_nimg"]
        self.teacher_metrics = counters.get("teacher_metrics")
        return counters
