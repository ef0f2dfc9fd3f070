"""Project corrupted images onto the data manifold with a trained SIGN student (zero-shot editing).

Takes a SIGN run directory (its newest G_ema snapshot and config.json) and clean images -- exact samples
of the embedded mixture, or ``--images file.npz`` (uint8 ``images`` [N, H, W, C], e.g. from
``sidkernels sample``) -- corrupts them (noisy, masked, lowres, grayscale), projects them with
``f(y + sigma_e eps)`` (masked: also inpainting), writes a PNG grid with rows clean / corrupted / projected
(/ inpainted) and, on the mixture, prints the exact NLL before and after.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--run", required=True, help="SIGN run directory (config.json + network-snapshot-*.safetensors)")
    p.add_argument("--corruption", default="noisy", choices=("noisy", "masked", "lowres", "grayscale"))
    p.add_argument("--strength", type=float, default=0.5, help="noise std (noisy) or masked fraction (masked)")
    p.add_argument("--sigma-e", type=float, default=0.0, dest="sigma_e", help="noise added before projecting")
    p.add_argument("--images", default=None, help=".npz with uint8 images [N, H, W, C] (default: mixture samples)")
    p.add_argument("--n", type=int, default=16, help="images to project")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output PNG (default RUN/projection-CORRUPTION.png)")
    p.add_argument("--device", default=None)


def run(args) -> int:
    import numpy as np
    import torch

    from sidkernels.checkpoint import load_checkpoint
    from sidkernels.distill.metrics import exact_metrics
    from sidkernels.distill.mixture import DigitMixture
    from sidkernels.images import image_grid, save_png, to_uint8
    from sidkernels.sign import IdempotentStudent, corrupt, inpaint, project

    run_dir = Path(args.run)
    snapshots = sorted(run_dir.glob("network-snapshot-*.safetensors"))
    if not (run_dir / "config.json").is_file() or not snapshots:
        print(f"error: {run_dir} is not a finished SIGN run (needs config.json and a network snapshot)", file=sys.stderr)
        return 1
    cfg = json.loads((run_dir / "config.json").read_text())
    if "time_mode" not in cfg:
        print(f"error: {run_dir} is not a SIGN run (SiD generators are not projectors)", file=sys.stderr)
        return 1
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = load_checkpoint(snapshots[-1]).to(device)
    f = IdempotentStudent(net, cfg["time_mode"], cfg["sigma_c"])
    gen = torch.Generator().manual_seed(args.seed)
    mixture = None
    if args.images:
        images = np.load(args.images)["images"][: args.n]
        clean = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    else:
        if cfg["preset"] != "mixture":
            print("error: --images is needed for runs on presets other than the mixture", file=sys.stderr)
            return 1
        mixture = DigitMixture.from_digits()
        clean = mixture.sample(args.n, generator=gen)[0]
    clean = clean.to(device)
    corrupted, mask = corrupt(clean, args.corruption, strength=args.strength, generator=gen)
    rows = [clean, corrupted, project(f, corrupted, sigma_e=args.sigma_e, generator=gen)]
    if args.corruption == "masked":
        rows.append(inpaint(f, corrupted, mask, generator=gen))
    out = Path(args.out or run_dir / f"projection-{args.corruption}.png")
    grid = image_grid(to_uint8(torch.cat(rows)), columns=len(clean), pad=1)
    save_png(grid, out, scale=4 if clean.shape[-1] <= 16 else 1)
    print(f"rows: clean / corrupted / projected{' / inpainted' if len(rows) == 4 else ''} -> {out}")
    if mixture is not None and len(clean) >= 2:
        names = ["clean", "corrupted", "projected", "inpainted"]
        for name, x in zip(names, rows):
            print(f"{name:>10}: exact NLL {exact_metrics(mixture, x.cpu())['nll']:.3f} nats/pixel")
    return 0
