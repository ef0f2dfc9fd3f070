"""Data parallelism over ``torchrun`` ranks (NCCL on GPUs, gloo on CPUs).

Gradients are averaged with one flattened ``all_reduce`` per network per optimiser step, after all
accumulation rounds: synchronisation happens exactly once per step by construction, and the compiled
forward graphs contain no communication.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes; returns ``(rank, world_size)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return tdist.get_rank(), tdist.get_world_size()


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks (no-op on one rank)."""
    world = world_size()
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if world_size() == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        tdist.broadcast(t.data, src=0)
