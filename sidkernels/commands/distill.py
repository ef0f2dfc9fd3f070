"""Distil a diffusion teacher into a one-step generator with SiD (or SIGN: --method sign).

With no arguments: the embedded default.  A small EDM teacher is trained on exact samples of a Gaussian
mixture of real 8x8 digits (cached after the first run), then distilled; the exact Frechet distance, NLL
and class KL of the one-step generator are logged to metrics.jsonl and plotted (metrics.png) next to the
teacher's 35-NFE Heun samples.  Presets reproduce the official runs given an EDM teacher checkpoint.
``--method sida`` adds SiDA's adversarial term (the fake-score network doubles as a discriminator on real
images; ``--sid-model`` starts from a SiD generator: SiD^2A).  ``--method sign`` trains an idempotent
generator/projector instead (SIGN, a reconstruction: see the README); ``--variant ign`` its original-IGN
baseline.  Multi-GPU: ``torchrun --nproc_per_node=K -m sidkernels distill``.
"""
from __future__ import annotations

import argparse
import dataclasses

from sidkernels.distill.config import PRECISIONS, PRESETS, DistillConfig
from sidkernels.distill.lr_schedule import LR_SCHEDULES
from sidkernels.latent import cli as latent_cli

METHODS = ("sid", "sida", "sign")


def add_arguments(p) -> None:
    p.add_argument("--method", default="sid", choices=METHODS)
    p.add_argument("--preset", default="mixture", choices=sorted(PRESETS) + latent_cli.LATENT_PRESET_NAMES)
    p.add_argument("--teacher", default=None, help="teacher checkpoint (EDM/SiD pickle, SiD .pt state or "
                   "our .safetensors), 'random' for a random-init teacher of the preset's architecture, or (mixture) 'exact' "
                   "for the analytic denoiser (G and the fake score then start from the cached network teacher)")
    p.add_argument("--out", default=None, help="run directory (default runs/sid-PRESET)")
    p.add_argument("--kimg", type=float, default=None, help="generator-update images to train on, thousands")
    p.add_argument("--resume", default=None, help="training state to continue from, or 'auto' (newest in --out)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--batch-gpu", type=int, default=None, help="micro-batch per GPU (accumulation rounds)")
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--lr", type=float, default=None, help="fake-score learning rate")
    p.add_argument("--glr", type=float, default=None, help="generator learning rate")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None, dest="lr_schedule",
                   help="both learning rates over the run (cosine: decay to 0 at --kimg)")
    p.add_argument("--ema-halflife", type=float, default=None, dest="ema_halflife_kimg", metavar="KIMG",
                   help="G_ema half-life in kimg")
    p.add_argument("--fake-updates", type=int, default=None, dest="fake_updates",
                   help="fake-score updates per generator update")
    p.add_argument("--student-channels", type=int, default=None, dest="student_channels",
                   help="mixture: start G and the fake score from the cached network teacher of this width")
    p.add_argument("--augment", type=float, default=None, help="fake-score augmentation probability p "
                   "(SiD; preset default: 0.12 CIFAR-10, 0.15 FFHQ/AFHQ, 0 otherwise)")
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the objectives")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None, dest="cuda_graphs",
                   help="with --compile: the objectives in CUDA graphs (Inductor's reduce-overhead mode), capturable Adam")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None, help="fused ops (off: PyTorch reference)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--tick", type=float, default=None, dest="tick_kimg", help="report interval in kimg")
    p.add_argument("--snap", type=int, default=None, dest="snap_ticks", help="checkpoint every N reports")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    fid = p.add_argument_group("FID of G_ema during the run (image presets)")
    fid.add_argument("--fid-every", type=float, default=None, dest="fid_every_kimg", metavar="KIMG",
                     help="FID every KIMG thousand images and at the end; keeps network-snapshot-best.* (default off)")
    fid.add_argument("--fid-num", type=int, default=None, dest="fid_num", help="generated images per FID (50000)")
    fid.add_argument("--detector", default=None, help="inception-2015-12-05.pt (TorchScript) or pytorch-fid's .pth: "
                     "a path, or a URL to download once into the cache")
    fid.add_argument("--fid-ref", default=None, dest="fid_ref", help="reference statistics npz (mu, sigma): EDM's "
                     "fid-refs or `sidkernels fid-ref`; a path or a URL")
    sida = p.add_argument_group("SiDA (--method sida)")
    sida.add_argument("--data", default=None, help="real images: a folder or zip in EDM's dataset layout "
                      "(dataset.json labels for conditional teachers); the mixture draws exact samples")
    sida.add_argument("--data-workers", type=int, default=None, dest="data_workers")
    sida.add_argument("--sid-model", default=None, dest="sid_model",
                      help="start G and G_ema from this SiD generator (SiD^2A)")
    sida.add_argument("--lsg-gan", type=float, default=None, dest="lsg_gan", help="generator GAN loss scale (0.01)")
    sida.add_argument("--lsd", type=float, default=None, help="discriminator loss scale (1)")
    sida.add_argument("--g-warmup-kimg", type=float, default=None, dest="g_warmup_kimg",
                      help="no generator update before this many kimg (100)")
    sida.add_argument("--gan-start-kimg", type=float, default=None, dest="gan_start_kimg",
                      help="the GAN term joins the generator loss after this many kimg (200)")
    sign = p.add_argument_group("SIGN (--method sign)")
    sign.add_argument("--variant", choices=("sign", "ign"), default=None)
    sign.add_argument("--score-loss", choices=("dmd", "sid"), default=None, dest="score_loss")
    sign.add_argument("--time-mode", choices=("fixed", "estimated", "none"), default=None, dest="time_mode")
    for term in ("idem", "flow", "dmd", "reg"):
        sign.add_argument(f"--lambda-{term}", type=float, default=None, dest=f"lambda_{term}")
    sign.add_argument("--reg-levels", choices=("end", "trajectory"), default=None, dest="reg_levels",
                      help="L_reg inputs: the latents only, or every state of their teacher trajectories")
    sign.add_argument("--reg-pair-dtype", choices=("float32", "float16", "bfloat16"), default=None,
                      dest="reg_pair_dtype", help="storage of the L_reg inputs (float16: half the memory)")
    sign.add_argument("--dmd-renoise", type=float, default=None, dest="dmd_renoise",
                      help="fraction of DMD samples made by one re-noised step f(f(z) + s eps)")
    sign.add_argument("--dmd-renoise-range", type=float, nargs=2, default=None, dest="dmd_renoise_range",
                      metavar=("LO", "HI"), help="s log-uniform in [LO, HI]")
    sign.add_argument("--flow-steps", type=int, default=None, dest="flow_steps", help="Karras grid size of L_flow")
    latent_cli.add_arguments(p)


def _method(name: str):
    """``(config class, make_config, trainer class)`` of a method."""
    if name == "sign":
        from sidkernels.sign import SIGNConfig, SIGNTrainer, sign_config
        return SIGNConfig, sign_config, SIGNTrainer
    if name == "sida":
        from sidkernels.distill.sida_config import SiDAConfig, sida_config
        from sidkernels.distill.sida_trainer import SiDATrainer
        return SiDAConfig, sida_config, SiDATrainer
    from sidkernels.distill import SiDTrainer, preset_config
    return DistillConfig, preset_config, SiDTrainer


def run(args) -> int:
    if args.preset in latent_cli.LATENT_PRESET_NAMES:  # latent text-to-image teachers: SiD-LSG
        return latent_cli.run(args)
    config_class, make_config, trainer_class = _method(args.method)
    fields = {f.name for f in dataclasses.fields(config_class)}
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("preset", "method", "no_progress")}
    stray = sorted(set(given) - fields - {"_run", "command"})
    if stray:
        raise SystemExit(f"error: {', '.join('--' + s.replace('_', '-') for s in stray)} do not apply to "
                         f"--method {args.method}")
    cfg = make_config(args.preset, **{k: v for k, v in given.items() if k in fields})
    trainer = trainer_class(cfg, progress=not args.no_progress)
    records = trainer.run()
    if records and trainer.rank == 0:
        last = records[-1]
        summary = " ".join(f"{k}={last[k]:.4g}" for k in ("kimg", "images_per_s", "fd", "nll", "class_kl", "fid")
                           if k in last)
        print(f"done: {summary}\nrun directory: {cfg.out}")
    return 0
