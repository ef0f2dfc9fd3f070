"""Data parallelism over ``torchrun`` ranks (NCCL on GPUs, gloo on CPUs) with torch's DistributedDataParallel.

Each rank works on its own device (``LOCAL_RANK``), and the trained network of each update (G in the generator
step, the fake score in its own step) runs wrapped in ``DistributedDataParallel``: its gradients are
all-reduced in buckets while the backward of the last accumulation round runs, and not at all on the rounds
before (``no_sync``), as the official loop does.  Networks used without gradients (the teacher; G in the fake
step; the fake score in the generator step) are called unwrapped.
"""
from __future__ import annotations

import contextlib
import os
from typing import Mapping

import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel


def world_size(env: Mapping[str, str] = os.environ) -> int:
    return int(env.get("WORLD_SIZE", "1"))


def rank_device(name: str, env: Mapping[str, str] = os.environ, cuda_available: bool | None = None) -> torch.device:
    """The device of this process: ``name`` (``auto``: CUDA if available, else the CPU); under torchrun with
    CUDA, the rank's own GPU ``cuda:LOCAL_RANK`` unless ``name`` gives an index."""
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    device = torch.device(("cuda" if cuda_available else "cpu") if name == "auto" else name)
    if device.type == "cuda" and device.index is None and world_size(env) > 1:
        device = torch.device("cuda", int(env.get("LOCAL_RANK", "0")))
    return device


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes on ``device``; returns ``(rank, world_size)``."""
    world = world_size()
    if world == 1:
        return 0, 1
    if not tdist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            tdist.init_process_group("nccl", device_id=device)
        else:
            tdist.init_process_group("gloo")
    return tdist.get_rank(), tdist.get_world_size()


def is_parallel() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def data_parallel(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``net`` wrapped for data-parallel training across the ranks (``net`` itself on one process)."""
    if not is_parallel():
        return net
    frozen = [p for p in net.parameters() if not p.requires_grad]
    for p in frozen:  # DDP hooks only the parameters that require gradients when it is built
        p.requires_grad_(True)
    wrapped = DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None,
                                      broadcast_buffers=False, find_unused_parameters=False)
    for p in frozen:
        p.requires_grad_(False)
    return wrapped


def synchronising(net: torch.nn.Module, last_round: bool):
    """The context of one accumulation round: gradients are all-reduced only in the last one."""
    if isinstance(net, DistributedDataParallel) and not last_round:
        return net.no_sync()
    return contextlib.nullcontext()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not is_parallel():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        tdist.broadcast(t.data, src=0)
