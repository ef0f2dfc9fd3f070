"""The training state of a SiD-LSG run: G, the fake score, the optional generator EMA (on the device or in
host memory), both optimisers and the counters, saved in the shared training-state format
(:mod:`sidkernels.distill.state`: one safetensors file, written atomically, resumed bitwise on the CPU).

EMA over parameters only, as in SiD (:mod:`sidkernels.distill.ema`); an EMA kept on the CPU receives G's
parameters by one device-to-host copy per tensor per iteration (``ema="cpu"``, the one-GPU default: it
costs no device memory).  Under FSDP the EMA is sharded like G and updated shard by shard, and a saved
state holds full tensors (:mod:`sidkernels.latent.fsdp`).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from sidkernels.distill import state
from sidkernels.distill.ema import update_ema
from sidkernels.latent.config import LatentConfig
from sidkernels.latent.denoiser import LatentDenoiser


def make_optimizer(params, *, lr: float, cfg: LatentConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW (beta1 0, beta2 0.999, weight decay 0.01 for AdamW), fused on CUDA, foreach elsewhere."""
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    extra = dict(weight_decay=0.01) if cfg.optimizer == "adamw" else {}
    impl = dict(fused=True) if device.type == "cuda" else dict(foreach=True)
    return kind(params, lr=lr, betas=(0.0, 0.999), eps=cfg.adam_eps, **extra, **impl)


def make_ema(G: LatentDenoiser, cfg: LatentConfig) -> LatentDenoiser | None:
    """The EMA copy of G (None with ``ema="off"``), in host memory with ``ema="cpu"``."""
    if cfg.ema == "off":
        return None
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    return ema.to("cpu") if cfg.ema == "cpu" else ema


class LSGState:
    """Everything a run updates.  ``G_ema`` is None with ``ema="off"`` (then G itself is sampled); ``fsdp``
    marks sharded networks (their state is gathered to rank 0 to be saved)."""

    def __init__(self, G: LatentDenoiser, fake: LatentDenoiser, G_ema: LatentDenoiser | None, cfg: LatentConfig,
                 device: torch.device, *, rank: int = 0):
        self.G, self.fake, self.G_ema = G, fake, G_ema
        self.fsdp, self.rank = cfg.fsdp, rank
        self.opt_G = make_optimizer(G.parameters(), lr=cfg.glr, cfg=cfg, device=device)
        self.opt_fake = make_optimizer(fake.parameters(), lr=cfg.lr, cfg=cfg, device=device)
        self.iteration = 0
        self.cur_nimg = 0

    @property
    def sampler(self) -> LatentDenoiser:
        return self.G if self.G_ema is None else self.G_ema

    @torch.no_grad()
    def update_ema(self, beta: float) -> None:
        """``p_ema <- p_ema + (1 - beta) (p - p_ema)`` over parameters (host copy first for a CPU EMA)."""
        if self.G_ema is None:
            return
        if self.fsdp:
            from sidkernels.latent.fsdp import local
            torch._foreach_lerp_([local(p) for p in self.G_ema.parameters()],
                                 [local(p).detach() for p in self.G.parameters()], 1.0 - beta)
            return
        ema_device = next(self.G_ema.parameters()).device
        if ema_device == next(self.G.parameters()).device:
            update_ema(self.G_ema, self.G, beta)
            return
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p.detach().to(ema_device), 1.0 - beta)

    def nets(self) -> dict:
        nets = {"G": self.G, "fake": self.fake}
        if self.G_ema is not None:
            nets["G_ema"] = self.G_ema
        return nets

    def optimizers(self) -> dict:
        return {"G": (self.G, self.opt_G), "fake": (self.fake, self.opt_fake)}

    def save(self, path, *, rng: dict, run_config: dict, extra_counters: dict | None = None) -> Path | None:
        """Write the state (rank 0; under FSDP every rank must call this: the tensors are gathered)."""
        nets, opts = self.nets(), {name: opt for name, (_, opt) in self.optimizers().items()}
        if self.fsdp:
            from sidkernels.latent.fsdp import StateDictView, full_optimizer_state, gathered_copy
            nets = {name: gathered_copy(net) for name, net in nets.items()}
            opts = {name: StateDictView(full_optimizer_state(net, opt))
                    for name, (net, opt) in self.optimizers().items()}
        if self.rank != 0:
            return None
        counters = {"iteration": self.iteration, "cur_nimg": self.cur_nimg, **(extra_counters or {})}
        return state.save_state(path, nets=nets, optimizers=opts, rng=rng, counters=counters,
                                run_config=run_config)

    def load(self, path) -> tuple[dict, dict]:
        """Restore networks, optimisers and counters from ``path``; returns ``(counters, rng tensors)``."""
        tensors, meta = state.read_state(path)
        saved = set(meta["nets"])
        if saved != set(self.nets()):
            raise ValueError(f"{path} holds networks {sorted(saved)} but this run has {sorted(self.nets())} "
                             f"(resume with the same --ema setting)")
        if self.fsdp:
            self._load_sharded(tensors, meta, path)
        else:
            for name, net in self.nets().items():
                state.load_net_state(net, tensors, name, path)
            for name, (_, opt) in self.optimizers().items():
                state.load_optimizer_state(opt, tensors, meta, name)
        counters = meta["counters"]
        self.iteration, self.cur_nimg = counters["iteration"], counters["cur_nimg"]
        rng = {k[len("rng/"):]: t for k, t in tensors.items() if k.startswith("rng/")}
        return counters, rng

    def _load_sharded(self, tensors: dict, meta: dict, path) -> None:
        from sidkernels.latent.fsdp import StateDictView, load_full_model_state, load_full_optimizer_state
        for name, net in self.nets().items():
            view = StateDictView()
            state.load_net_state(view, tensors, name, path)
            load_full_model_state(net, view.value)
        for name, (net, opt) in self.optimizers().items():
            view = StateDictView()
            state.load_optimizer_state(view, tensors, meta, name)
            load_full_optimizer_state(net, opt, view.value)
