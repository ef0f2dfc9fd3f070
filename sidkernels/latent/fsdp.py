"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for teachers whose G, fake score and teacher do not fit one
GPU: each UNet's down blocks, mid block and up blocks are sharded units, the rest (embeddings, conv in/out)
the root unit, so one block's parameters are gathered at a time.  The frozen teacher is sharded the same
way (``shard_teacher``) or replicated.  Gradients are reduce-scattered (averaged over ranks) after the last
accumulation round only (:func:`gradient_sync`).

A training state stays the single-file format of :mod:`sidkernels.distill.state`: full (unsharded)
tensors gathered to rank 0 for writing, and full tensors read by every rank and re-sharded for resuming,
so a state written by K ranks resumes on K ranks (the RNG streams are per rank).
"""
from __future__ import annotations

import contextlib

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from sidkernels.latent.denoiser import LatentDenoiser

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
SCATTER = StateDictOptions(full_state_dict=True, strict=True)


def shard_denoiser(net: LatentDenoiser) -> LatentDenoiser:
    """Shard ``net.unet`` in place: every down/mid/up block a unit, then the UNet itself (resharded after its
    forward too, so parameters are always shards between calls: the EMA and the state writer rely on it)."""
    unet = net.unet
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        if block is not None:
            fully_shard(block)
    fully_shard(unet, reshard_after_forward=True)
    return net


def is_sharded(net: LatentDenoiser) -> bool:
    return isinstance(net.unet, FSDPModule)


def gradient_sync(net: LatentDenoiser, enabled: bool):
    """Reduce-scatter gradients in this backward only if ``enabled`` (the last accumulation round)."""
    net.unet.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a (possibly sharded) parameter."""
    return t.to_local() if isinstance(t, DTensor) else t


def full_model_state(net: LatentDenoiser) -> dict[str, torch.Tensor]:
    """The full state dict of a sharded denoiser (collective; rank 0 gets CPU tensors, other ranks {})."""
    return {f"unet.{k}": v for k, v in get_model_state_dict(net.unet, options=GATHER).items()}


def full_optimizer_state(net: LatentDenoiser, opt: torch.optim.Optimizer) -> dict:
    """The optimiser's full state in ``torch.optim`` form (parameters by index, in ``net.parameters()``
    order), gathered to rank 0 (collective; other ranks get an empty state)."""
    with _trainable(net):
        sd = get_optimizer_state_dict(net, opt, options=GATHER)
    index = {name: i for i, (name, _) in enumerate(net.named_parameters())}
    groups = [{**g, "params": [index[name] for name in g["params"]]} for g in sd.get("param_groups", [])]
    return {"state": {index[name]: entry for name, entry in sd.get("state", {}).items()}, "param_groups": groups}


def load_full_model_state(net: LatentDenoiser, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a full state dict (every rank passes it) into a sharded denoiser."""
    unet_sd = {k[len("unet."):]: v for k, v in state_dict.items() if k.startswith("unet.")}
    set_model_state_dict(net.unet, unet_sd, options=SCATTER)


def load_full_optimizer_state(net: LatentDenoiser, opt: torch.optim.Optimizer, state_dict: dict) -> None:
    """Load a full optimiser state in ``torch.optim`` form (parameters by index) into a sharded run."""
    names = [name for name, _ in net.named_parameters()]
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state_dict["param_groups"]]
    sd = {"state": {names[int(i)]: entry for i, entry in state_dict["state"].items()}, "param_groups": groups}
    with _trainable(net):  # torch initialises the optimiser's local state only for parameters that need grad
        set_optimizer_state_dict(net, opt, sd, options=SCATTER)


@contextlib.contextmanager
def _trainable(net: LatentDenoiser):
    """The trainer keeps networks frozen between their updates; the state-dict helpers want them trainable."""
    before = [p.requires_grad for p in net.parameters()]
    net.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(net.parameters(), before):
            p.requires_grad_(flag)


class StateDictView:
    """An object that hands a fixed state dict to the training-state writer (which calls ``state_dict()``)
    and takes one from its reader (``load_state_dict``)."""

    def __init__(self, state_dict: dict | None = None):
        self.value = state_dict

    def state_dict(self) -> dict:
        return self.value

    def load_state_dict(self, state_dict: dict, **_) -> None:
        self.value = state_dict


def gathered_copy(net: LatentDenoiser) -> LatentDenoiser | None:
    """An unsharded CPU copy of a sharded denoiser on rank 0 (collective; other ranks get None): the UNet is
    rebuilt on the meta device from its config and takes the gathered tensors (no further copy)."""
    sd = full_model_state(net)
    if not sd:
        return None
    unet_class = next(c for c in type(net.unet).__mro__ if not issubclass(c, FSDPModule))
    with torch.device("meta"):
        unet = unet_class.from_config(net.unet.config)
    copy = LatentDenoiser(unet, net.init_kwargs["scheduler_config"], net.prediction_type)
    copy.load_state_dict(sd, strict=True, assign=True)
    return copy.eval().requires_grad_(False)
