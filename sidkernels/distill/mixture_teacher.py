"""The embedded default's teacher: a small EDM denoiser trained on exact samples of the digit mixture,
cached on disk after the first run (``$SIDKERNELS_CACHE`` or ``~/.cache/sidkernels``)."""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
from tqdm import tqdm

from sidkernels.checkpoint import load_checkpoint, save_network
from sidkernels.distill.ema import ema_beta, update_ema
from sidkernels.distill.mixture import DigitMixture
from sidkernels.distill.sid_losses import denoising_loss
from sidkernels.networks.precond import EDMPrecond

MIXTURE_NET = dict(img_resolution=8, img_channels=1, label_dim=0, model_type="SongUNet", model_channels=32,
                   channel_mult=[1, 2], num_blocks=2, attn_resolutions=[4], dropout=0.0, augment_dim=0,
                   embedding_type="positional", channel_mult_noise=1, resample_filter=[1, 1])
TEACHER_TRAINING = dict(iterations=800, batch=128, lr=2e-3, ema_halflife_kimg=10.0, seed=0)


def mixture_network(**overrides) -> EDMPrecond:
    return EDMPrecond(**dict(MIXTURE_NET, **overrides))


def cache_dir() -> Path:
    return Path(os.environ.get("SIDKERNELS_CACHE", Path.home() / ".cache" / "sidkernels"))


def train_teacher(mixture: DigitMixture, net: EDMPrecond, *, iterations: int, batch: int, lr: float,
                  ema_halflife_kimg: float, seed: int, device: torch.device, progress: bool = True) -> EDMPrecond:
    """EDM denoising score matching on exact mixture samples; returns the EMA network (eval mode).

    Runs on its own RNG stream (seeded by ``seed``), leaving the caller's RNG state untouched.
    """
    net = net.to(device).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        bar = tqdm(range(iterations), desc="teacher", disable=not progress, unit="it")
        for it in bar:
            y, _ = mixture.sample(batch)
            loss = denoising_loss(net, y.to(device), None, scale=1.0 / batch, net_dtype=torch.float32)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            update_ema(ema, net, ema_beta(it * batch, batch, ema_halflife_kimg, 0.05))
            if it % 100 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
    return ema


def cached_teacher(mixture: DigitMixture, device: torch.device, *, net_overrides=None, training=None,
                   progress: bool = True) -> EDMPrecond:
    """Load the teacher for this mixture/network/training recipe from the cache, training it if absent."""
    net_kwargs = dict(MIXTURE_NET, **(net_overrides or {}))
    recipe = dict(TEACHER_TRAINING, **(training or {}))
    key = json.dumps({"net": net_kwargs, "training": recipe, "mixture": [len(mixture.means), mixture.std],
                      "means": hashlib.sha256(mixture.means.numpy().tobytes()).hexdigest()}, sort_keys=True)
    path = cache_dir() / f"mixture-teacher-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if path.is_file():
        return load_checkpoint(path).to(device)
    teacher = train_teacher(mixture, EDMPrecond(**net_kwargs), device=device, progress=progress, **recipe)
    save_network(teacher.cpu(), path)
    return teacher.to(device)
