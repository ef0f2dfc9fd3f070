"""Generate images from a checkpoint with EDM's Heun sampler (or in one step, for SiD generators, or in K
re-noised steps, for SIGN students: ``--sign-steps K``, with the time mode and re-noising lists of the
``config.json`` next to the checkpoint when there is one).

Writes ``grid.png`` (an image grid) and ``samples.npz`` (``images`` uint8 [N, H, W, C], ``seeds``,
``labels``: class index, or -1 for unconditional networks) into ``--outdir``.  Latents, labels and churn
noise come from one generator per seed, so an image depends only on its seed, not on the batch it is in.
Teacher defaults: 18 steps (35 evaluations); EDM's best settings are 40 steps for FFHQ/AFHQ 64 and
``--steps 256 --S_churn 40 --S_min 0.05 --S_max 50 --S_noise 1.003`` for ImageNet 64.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    seeds = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"--seeds: cannot parse {part!r}; use e.g. '0-63' or '1,5,9'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        seeds.extend(range(lo, hi + 1))
    return seeds


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help=".safetensors, EDM/SiD .pkl or SiD training-state .pt")
    parser.add_argument("--outdir", required=True, help="directory for grid.png and samples.npz")
    parser.add_argument("--seeds", default="0-63", help="seeds, e.g. '0-63' or '1,5,9' (default 0-63)")
    parser.add_argument("--batch", type=int, default=64, help="images per network call (default 64)")
    parser.add_argument("--key", default=None, help="network inside a .pkl/.pt (default ema / G_ema)")
    parser.add_argument("--class", dest="class_idx", type=int, default=None,
                        help="class index for conditional networks (default: random per seed)")
    parser.add_argument("--steps", type=int, default=18, help="Heun steps N (2N-1 evaluations; default 18)")
    parser.add_argument("--sigma-min", type=float, default=0.002)
    parser.add_argument("--sigma-max", type=float, default=80.0)
    parser.add_argument("--rho", type=float, default=7.0)
    parser.add_argument("--S_churn", type=float, default=0.0)
    parser.add_argument("--S_min", type=float, default=0.0)
    parser.add_argument("--S_max", type=float, default=float("inf"))
    parser.add_argument("--S_noise", type=float, default=1.0)
    parser.add_argument("--one-step", action="store_true",
                        help="SiD generator: x = D(init_sigma * z, init_sigma), one evaluation")
    parser.add_argument("--init-sigma", type=float, default=2.5, help="sigma of --one-step (default 2.5)")
    parser.add_argument("--sign-steps", type=int, default=None, metavar="K",
                        help="SIGN student: K steps, x <- f(80 z), then x <- f(x + s_k eps) (K evaluations)")
    parser.add_argument("--renoise", type=float, nargs="+", default=None, metavar="S",
                        help="SIGN re-noising levels (K-1 of them; default: the run's config.json, else the defaults of docs/sign.md §8)")
    parser.add_argument("--time-mode", choices=("fixed", "estimated", "none"), default=None,
                        help="SIGN student's time mode (default: the run's config.json, else fixed)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--grid-cols", type=int, default=None, help="images per grid row (default ~sqrt(N))")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class PerSeedNoise:
    """One ``torch.Generator`` per seed; draws stack one sample per generator."""

    def __init__(self, seeds, device):
        import torch

        self.torch = torch
        self.device = device
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def randn(self, shape, dtype=None):
        return self.torch.stack([self.torch.randn(shape, generator=g, device=self.device, dtype=dtype)
                                 for g in self.generators])

    def randn_like(self, x):
        return self.randn(x.shape[1:], x.dtype)

    def randint(self, high: int):
        return self.torch.cat([self.torch.randint(high, (1,), generator=g, device=self.device)
                               for g in self.generators])


def _sign_settings(args) -> tuple[dict, list[float]]:
    """The SIGN run's config.json beside the checkpoint (if any) under the command-line overrides, and the
    re-noising levels of ``--sign-steps``."""
    import json

    from sidkernels.sign import renoise_sigmas

    if args.sign_steps < 1:
        raise ValueError(f"--sign-steps must be >= 1, got {args.sign_steps}")
    config_path = Path(args.checkpoint).parent / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if args.time_mode is not None:
        config["time_mode"] = args.time_mode
    schedule = config.get("renoise") if args.renoise is None else {args.sign_steps: args.renoise}
    try:
        return config, renoise_sigmas(args.sign_steps, schedule)
    except ValueError as err:
        raise ValueError(f"--renoise / --sign-steps: {err}") from None


def _generate(net, seeds, args, device, sign=None):
    import torch

    from sidkernels.images import to_uint8
    from sidkernels.sampler import sample_heun

    noise = PerSeedNoise(seeds, device)
    latents = noise.randn([net.img_channels, net.img_resolution, net.img_resolution])
    labels, class_idx = None, torch.full((len(seeds),), -1, dtype=torch.int64)
    if net.label_dim:
        if args.class_idx is not None:
            if not 0 <= args.class_idx < net.label_dim:
                raise ValueError(f"--class must be in [0, {net.label_dim}), got {args.class_idx}")
            class_idx = torch.full((len(seeds),), args.class_idx, dtype=torch.int64)
        else:
            class_idx = noise.randint(net.label_dim).cpu()
        labels = torch.eye(net.label_dim, device=device)[class_idx.to(device)]
    with torch.no_grad():
        if sign is not None:
            from sidkernels.sign import IdempotentStudent, sample_steps
            cfg, sigmas = sign
            f = IdempotentStudent(net, cfg.get("time_mode", "fixed"), cfg.get("sigma_c", 80.0))
            images = sample_steps(f, latents, sigmas=sigmas, sigma_max=cfg.get("sigma_max", 80.0), labels=labels,
                                  randn_like=noise.randn_like)
        elif args.one_step:
            images = net(latents * args.init_sigma, args.init_sigma, labels)
        else:
            images = sample_heun(net, latents, num_steps=args.steps, class_labels=labels, sigma_min=args.sigma_min,
                                 sigma_max=args.sigma_max, rho=args.rho, S_churn=args.S_churn, S_min=args.S_min,
                                 S_max=args.S_max, S_noise=args.S_noise, randn_like=noise.randn_like)
    return to_uint8(images), class_idx.numpy()


def run(args) -> int:
    import pickle

    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from sidkernels.checkpoint import CheckpointError, load_checkpoint
    from sidkernels.images import image_grid, save_png

    try:
        seeds = parse_seeds(args.seeds)
        if args.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {args.batch}")
        sign = _sign_settings(args) if args.sign_steps is not None else None
        net = load_checkpoint(args.checkpoint, key=args.key)
    except (ValueError, CheckpointError, pickle.UnpicklingError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not hasattr(net, "round_sigma"):
        print(f"error: {args.checkpoint} holds a bare {type(net).__name__}; sampling needs a preconditioned "
              "network (EDMPrecond, VPPrecond, VEPrecond, iDDPMPrecond)", file=sys.stderr)
        return 1
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = net.to(device)
    batches = [seeds[i:i + args.batch] for i in range(0, len(seeds), args.batch)]
    images, labels = [], []
    try:
        for batch in tqdm(batches, desc="sample", unit="batch", disable=args.no_progress):
            x, y = _generate(net, batch, args, device, sign)
            images.append(x)
            labels.append(y)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    images, labels = np.concatenate(images), np.concatenate(labels)

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    np.savez(outdir / "samples.npz", images=images, seeds=np.asarray(seeds, dtype=np.int64), labels=labels)
    save_png(image_grid(images, args.grid_cols), outdir / "grid.png")
    print(f"wrote {len(images)} images to {outdir / 'grid.png'} and {outdir / 'samples.npz'}")
    return 0
