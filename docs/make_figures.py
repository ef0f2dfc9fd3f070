"""Draw the README's SiD-vs-SIGN figures from two finished runs on the embedded mixture.

    python docs/make_figures.py --sid runs/sid-mixture --sign runs/sign-mixture [--out docs]

Writes ``embedded-sid-vs-sign.png`` (exact metrics against kimg, both methods, teacher as a dashed line),
``embedded-sign-steps.png`` (SiD's one step, then SIGN G_ema at 1, 2, 3 and 4 steps with the run's
re-noising schedule, all from the same latents) and ``embedded-sign-projection.png`` (clean / corrupted /
projected rows for noisy, masked and low-resolution digits), and prints the exact metrics of each sampler as a Markdown table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def latest_snapshot(run: Path) -> Path:
    return sorted(run.glob("network-snapshot-*.safetensors"))[-1]


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sidkernels.checkpoint import load_checkpoint
    from sidkernels.distill.metrics import exact_metrics
    from sidkernels.distill.mixture import DigitMixture
    from sidkernels.distill.report import read_jsonl
    from sidkernels.distill.sid_losses import generate
    from sidkernels.images import image_grid, save_png, to_uint8
    from sidkernels.sign import IdempotentStudent, corrupt, project, renoise_sigmas, sample_steps

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sid", type=Path, required=True)
    parser.add_argument("--sign", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    mixture = DigitMixture.from_digits()

    runs = {"SiD": read_jsonl(args.sid / "metrics.jsonl"), "SIGN": read_jsonl(args.sign / "metrics.jsonl")}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key in zip(axes, ("fd", "nll", "class_kl")):
        for name, records in runs.items():
            ax.plot([r["kimg"] for r in records], [r[key] for r in records], marker="o", ms=3, label=f"{name} (1 step)")
            two = [(r["kimg"], r[f"{key}_2step"]) for r in records if f"{key}_2step" in r]
            if two:
                ax.plot(*zip(*two), marker="s", ms=3, label=f"{name} (2 steps)")
        ax.set_title(key)
        ax.set_xlabel("kimg")
        if key == "fd":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "embedded-sid-vs-sign.png", dpi=110)
    plt.close(fig)

    sid_net = load_checkpoint(latest_snapshot(args.sid))
    sign_cfg = json.loads((args.sign / "config.json").read_text())
    f = IdempotentStudent(load_checkpoint(latest_snapshot(args.sign)), sign_cfg["time_mode"], sign_cfg["sigma_c"])
    eps = torch.randn(2000, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rows, table = [], ["| sampler | NFE | exact FD | NLL (nats/pixel) | class KL |", "|---|---|---|---|---|"]
    with torch.no_grad():
        samples = {"SiD G_ema": (1, generate(sid_net, eps, None, 2.5))}
        for k in (1, 2, 3, 4):
            sigmas = renoise_sigmas(k, sign_cfg.get("renoise"))
            name = f"SIGN G_ema, {k} step{'s' if k > 1 else ''}" + (f" (re-noise {sigmas})" if sigmas else "")
            samples[name] = (k, sample_steps(f, eps, sigmas=sigmas, generator=torch.Generator().manual_seed(1)))
    for name, (nfe, x) in samples.items():
        m = exact_metrics(mixture, x)
        table.append(f"| {name} | {nfe} | {m['fd']:.3f} | {m['nll']:.3f} | {m['class_kl']:.4f} |")
        rows.append(x[:16])
    save_png(image_grid(to_uint8(torch.cat(rows)), columns=16, pad=1), args.out / "embedded-sign-steps.png", scale=4)

    gen = torch.Generator().manual_seed(2)
    clean = mixture.sample(16, generator=gen)[0]
    blocks = []
    for kind, strength in (("noisy", 0.5), ("masked", 0.5), ("lowres", 0.0)):
        corrupted, _ = corrupt(clean, kind, strength=strength, generator=gen)
        blocks += [clean, corrupted, project(f, corrupted)]
    save_png(image_grid(to_uint8(torch.cat(blocks)), columns=16, pad=1), args.out / "embedded-sign-projection.png",
             scale=4)
    print("\n".join(table))


if __name__ == "__main__":
    main()
