"""Compare finished runs on the embedded mixture: exact-metric curves in one figure, last reports as a table.

    python docs/compare_runs.py SiD=runs/sid-mixture SiDA=runs/sida-mixture --out docs/embedded-sid-vs-sida.png

Each run's ``metrics.jsonl`` gives the curves (FD on a log scale, NLL, class KL against kimg); the
teacher's 35-NFE Heun metrics, when a run recorded them, are a dashed line.
"""
from __future__ import annotations

import argparse
from pathlib import Path

KEYS = ("fd", "nll", "class_kl")


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sidkernels.distill.report import read_jsonl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = {name: Path(path) for name, path in (item.split("=", 1) for item in args.runs)}
    fig, axes = plt.subplots(1, len(KEYS), figsize=(11, 3.2))
    teacher = None
    print("| run | kimg | exact FD | NLL (nats/pixel) | class KL | generator images/s |")
    print("|---|---|---|---|---|---|")
    for name, run in runs.items():
        records = read_jsonl(run / "metrics.jsonl")
        for ax, key in zip(axes, KEYS):
            ax.plot([r["kimg"] for r in records], [r[key] for r in records], marker="o", ms=3, label=name)
        last = records[-1]
        speed = sorted(r["images_per_s"] for r in records)[len(records) // 2]
        print(f"| {name} | {last['kimg']:.0f} | {last['fd']:.3f} | {last['nll']:.3f} | {last['class_kl']:.4f} | "
              f"{speed:.0f} (median of reports) |")
        teacher = teacher or _teacher_metrics(run)
    for ax, key in zip(axes, KEYS):
        if teacher:
            ax.axhline(teacher[key], color="gray", ls="--", lw=1, label="teacher (35 NFE)")
        ax.set_title(key)
        ax.set_xlabel("kimg")
        if key == "fd":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def _teacher_metrics(run: Path) -> dict | None:
    """The teacher metrics stored in the run's newest training state, if any."""
    from sidkernels.distill import state
    path = state.latest_state(run)
    if path is None:
        return None
    return state.read_state(path)[1]["counters"].get("teacher_metrics")


if __name__ == "__main__":
    main()
