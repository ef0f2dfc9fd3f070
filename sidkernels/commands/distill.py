"""Distil a diffusion teacher into a one-step generator with SiD.

With no arguments: the embedded default.  A small EDM teacher is trained on exact samples of a Gaussian
mixture of real 8x8 digits (cached after the first run), then distilled; the exact Frechet distance, NLL
and class KL of the one-step generator are logged to metrics.jsonl and plotted (metrics.png) next to the
teacher's 35-NFE Heun samples.  Presets reproduce the official runs given an EDM teacher checkpoint.
Multi-GPU: ``torchrun --nproc_per_node=K -m sidkernels distill ...``.
"""
from __future__ import annotations

import argparse
import dataclasses

from sidkernels.distill.config import PRECISIONS, PRESETS, DistillConfig


def add_arguments(p) -> None:
    p.add_argument("--preset", default="mixture", choices=sorted(PRESETS))
    p.add_argument("--teacher", default=None, help="teacher checkpoint (EDM/SiD pickle, SiD .pt state or "
                   "our .safetensors), or 'random' for a random-init teacher of the preset's architecture")
    p.add_argument("--out", default=None, help="run directory (default runs/sid-PRESET)")
    p.add_argument("--kimg", type=float, default=None, help="generator-update images to train on, thousands")
    p.add_argument("--resume", default=None, help="training state to continue from, or 'auto' (newest in --out)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--batch-gpu", type=int, default=None, help="micro-batch per GPU (accumulation rounds)")
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--lr", type=float, default=None, help="fake-score learning rate")
    p.add_argument("--glr", type=float, default=None, help="generator learning rate")
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the objectives")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None, help="fused ops (off: PyTorch reference)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--tick", type=float, default=None, dest="tick_kimg", help="report interval in kimg")
    p.add_argument("--snap", type=int, default=None, dest="snap_ticks", help="checkpoint every N reports")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from sidkernels.distill import SiDTrainer, preset_config
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and k != "preset"}
    cfg = preset_config(args.preset, **overrides)
    trainer = SiDTrainer(cfg, progress=not args.no_progress)
    records = trainer.run()
    if records and trainer.rank == 0:
        last = records[-1]
        summary = " ".join(f"{k}={last[k]:.4g}" for k in ("kimg", "images_per_s", "fd", "nll", "class_kl")
                           if k in last)
        print(f"done: {summary}\nrun directory: {cfg.out}")
    return 0
