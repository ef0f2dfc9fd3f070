"""The teacher provider, the first stage of a distillation run: what the students learn from and start from.

A :class:`Teacher` holds the frozen score ``f_phi`` the objectives call, the network the one-step generator,
the fake score and G_ema are copies of (the teacher itself, except when the score is analytic), and the
embedded mixture when the run has an exact target.  :func:`provide_teacher` resolves a preset and a teacher
source:

* ``mixture``: no source trains (or takes from the cache) the embedded default's small EDM teacher;
  ``"exact"`` is the mixture's closed-form denoiser as the score, with the cached network as the students'
  start; ``"random"`` a random-init network; a path a checkpoint of that architecture;
* an image preset: ``"random"`` or a checkpoint (an official EDM/SiD pickle, a SiD training state, our
  safetensors) loaded into the preset's EDM network.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from sidkernels.checkpoint import load_checkpoint
from sidkernels.distill.exact_teacher import ExactTeacher
from sidkernels.distill.mixture import DigitMixture
from sidkernels.distill.mixture_teacher import cached_teacher, mixture_network


@dataclasses.dataclass
class Teacher:
    """A run's teacher: ``score`` (f_phi, frozen, eval), ``init`` (what the students are copied from) and the
    exact target (the embedded mixture, or None)."""
    score: nn.Module
    init: nn.Module
    mixture: DigitMixture | None


def seeded(seed: int) -> contextlib.ExitStack:
    """Build something (a random network) on its own RNG stream, reproducibly, leaving the caller's intact."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))
    torch.manual_seed(seed)
    return stack


def load_into(net: nn.Module, path: str, preset: str) -> nn.Module:
    """``net`` with the weights of checkpoint ``path`` (same architecture, strict)."""
    loaded = load_checkpoint(path)
    try:
        net.load_state_dict(loaded.state_dict(), strict=True)
    except RuntimeError as e:
        raise ValueError(f"teacher checkpoint {path} does not fit preset {preset!r} (wrong architecture): "
                         f"{str(e).splitlines()[0]} ...") from e
    return net


def provide_teacher(preset: str, source: str | None, *, device: torch.device, dropout: float | None = None,
                    seed: int = 0, student_channels: int | None = None, progress: bool = True) -> Teacher:
    """The teacher of ``preset`` from ``source`` (None, ``"exact"``, ``"random"`` or a checkpoint path), on
    ``device``, frozen and in eval mode; ``dropout`` overrides the network's (the students inherit it);
    ``student_channels`` (mixture) starts the students from the cached network teacher of that width."""
    overrides = {} if dropout is None else {"dropout": dropout}
    mixture = None
    if preset == "mixture":
        mixture = DigitMixture.from_digits()
        if source == "random":
            with seeded(seed):
                network = mixture_network(**overrides)
        elif source not in (None, "exact"):
            network = load_into(mixture_network(**overrides), source, preset)
        else:
            network = cached_teacher(mixture, device, progress=progress)
        score = ExactTeacher(mixture) if source == "exact" else network
        init = network if student_channels is None else cached_teacher(
            mixture, device, net_overrides={"model_channels": student_channels}, progress=progress)
    else:
        from sidkernels.networks import build_preset
        with seeded(seed):
            network = build_preset(preset, **overrides)
        score = init = network if source == "random" else load_into(network, source, preset)
    score = score.to(device).eval().requires_grad_(False)
    return Teacher(score=score, init=init.to(device), mixture=mixture)
