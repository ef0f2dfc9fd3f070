"""SiD's score-difference signal on a mixture run's networks: its size, where G's gradient comes from, and
whether bf16 autocast hurts it.

    SIDKERNELS_CACHE=.cache python docs/study/score_signal.py RUN_DIR|STATE_FILE [--n 512] [--json OUT]

With a run's newest training state (or the given one) (G, the fake score f_psi, its teacher f_phi) and one draw of
``z, sigma ~ sample_sigma_sid, eps``, evaluates ``x_g = G(z)``, ``x_t = x_g + sigma eps`` and the score
difference ``d = f_phi(x_t) - f_psi(x_t)`` once in fp32 and once under bf16 autocast (network input
``c_in x_t`` in bf16, as the trainer passes it), and prints, per sigma bin:

    |d| / |f_phi - x_t|            how small the difference is next to what each network outputs
    |d_bf16 - d_fp32| / |d_fp32|   bf16's relative error of the difference (per-sample L2 norms, median)

    |g_bin| / |g|                  the norm of G's (fp32) gradient from the bin's samples alone, relative to the
                                   whole draw's gradient g (the loss is a sum over samples, so the bins' add up to g)
    max_i |g_i| / |g|              the largest single-sample gradient in the bin, relative to |g| (heavy tails)

and, for G's gradient of the SiD loss on the whole draw, the cosine and norm ratio of the bf16 gradient to the
fp32 one, next to the same numbers for two fp32 gradients of independent draws (the minibatch noise the
optimiser sees anyway).  fp32 vs bf16 is "hurt" when its error is not small against that noise.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import torch

import sidkernels as sk
from sidkernels.distill import DistillConfig, SiDTrainer
from sidkernels.distill import state
from sidkernels.distill.sid_losses import generate

BINS = (0.002, 0.1, 0.5, 2.0, 8.0, 80.0)


def load(run: Path) -> SiDTrainer:
    """The trainer of a run directory's newest training state, or of a given training-state file."""
    path = run if run.is_file() else state.latest_state(run)
    if path is None:
        raise SystemExit(f"error: no training state in {run}")
    values = dict(state.read_state(path)[1]["run_config"], resume=str(path), teacher_eval_samples=0, device="cpu")
    return SiDTrainer(DistillConfig(**values), progress=False, log=lambda *a, **k: None)


def draw(n: int, cfg, seed: int):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((n, 1, 8, 8), generator=gen)
    sigma = sk.sample_sigma_sid(n, tmax=cfg.tmax, generator=gen)
    eps = torch.randn((n, 1, 8, 8), generator=gen)
    return z, sigma, eps


def evaluate(trainer: SiDTrainer, z, sigma, eps, dtype, weights=None):
    """(d, a - x_t, G's gradient) for one draw, with everything under autocast(dtype) (None: fp32); ``weights``
    ``[N]`` weighs each sample's loss (None: all 1)."""
    cfg = trainer.cfg
    G = trainer.G.train().requires_grad_(True)
    params = list(G.parameters())
    ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with ctx:
        x_g = generate(G, z, None, cfg.init_sigma)
        x_t = x_g + sigma.view(-1, 1, 1, 1) * eps
        net_in = (x_t / (sigma.view(-1, 1, 1, 1) ** 2 + 0.25).sqrt()).to(dtype or torch.float32)
        a = trainer.teacher(x_t, sigma, net_input=net_in)
        b = trainer.fake(x_t, sigma, net_input=net_in)
        per_sample = sk.sid_generator_loss(a, b, x_g, alpha=cfg.alpha, reduction="none", loss_scale=cfg.lsg / len(z))
        loss = per_sample.sum() if weights is None else (per_sample * weights).sum()
    grads = torch.autograd.grad(loss, params)
    G.eval().requires_grad_(False)
    flat = torch.cat([g.flatten() for g in grads]).double()
    return (a - b).detach().flatten(1).double(), (a - x_t).detach().flatten(1).double(), flat


def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u @ v / (u.norm() * v.norm()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (its newest training state) or a training state")
    parser.add_argument("--n", type=int, default=512, help="samples per draw")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trainer = load(args.run)
    z, sigma, eps = draw(args.n, trainer.cfg, seed=0)
    d32, r32, g32 = evaluate(trainer, z, sigma, eps, None)
    d16, _, g16 = evaluate(trainer, z, sigma, eps, torch.bfloat16)
    _, _, g32b = evaluate(trainer, *draw(args.n, trainer.cfg, seed=1), None)
    out = {"run": str(args.run), "kimg": trainer.cur_nimg / 1000, "n": args.n, "bins": []}
    print(f"{args.run} at {out['kimg']:.0f} kimg, {args.n} samples")
    print("| sigma | samples | median abs(d) / abs(a - x_t) | median bf16 rel. error of d | abs(g_bin) / abs(g) | "
          "max_i abs(g_i) / abs(g) |")
    print("|---|---|---|---|---|---|")
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        m = (sigma >= lo) & (sigma < hi)
        if not m.any():
            continue
        size = (d32[m].norm(dim=1) / r32[m].norm(dim=1)).median().item()
        err = ((d16[m] - d32[m]).norm(dim=1) / d32[m].norm(dim=1)).median().item()
        share = evaluate(trainer, z, sigma, eps, None, weights=m.float())[2].norm().item() / g32.norm().item()
        # one sample's gradient: the same loss on a batch of one (G has no batch coupling), rescaled to 1/N
        top = max(evaluate(trainer, z[i:i + 1], sigma[i:i + 1], eps[i:i + 1], None)[2].norm().item()
                  for i in m.nonzero().flatten().tolist()) / len(z) / g32.norm().item()
        out["bins"].append({"sigma": [lo, hi], "samples": int(m.sum()), "d_over_output": size, "bf16_rel_err": err,
                            "grad_share": share, "max_single_grad": top})
        print(f"| [{lo:g}, {hi:g}) | {int(m.sum())} | {size:.4f} | {err:.4f} | {share:.3f} | {top:.3f} |")
    out["grad"] = {"cos_bf16_fp32": cosine(g16, g32), "norm_ratio_bf16_fp32": float(g16.norm() / g32.norm()),
                   "cos_fp32_two_draws": cosine(g32, g32b), "norm_ratio_fp32_two_draws": float(g32b.norm() / g32.norm())}
    print("G gradient: " + ", ".join(f"{k} {v:.4f}" for k, v in out["grad"].items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
