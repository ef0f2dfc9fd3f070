"""Table and curves of the SiD study (runs of ``docs/study/run_study.py`` in ``runs/study/``).

    python docs/study/plot_study.py [--root runs/study] [--out docs/study] [--json docs/study/results.json]

Prints a Markdown table with one row per configuration (configurations that differ only in their seed,
``NAME-sK``, are one row: the mean, and the spread as min-max) and draws one figure per group of ``FIGURES``:
exact FD / NLL / class KL of G_ema against kimg, one curve per configuration (seeds: the mean), with the
35-NFE Heun reference of each teacher as a dashed line.  Figures go to ``OUT/study-GROUP.png``; ``--json``
writes every finished run (its ``final.json`` and its report curve) and the references into one file.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

KEYS = ("fd", "nll", "class_kl")
SEED = re.compile(r"^(?P<base>.+)-s(?P<seed>\d+)$")
BIG = "eval_10000"
# "-old" names: runs of the code before the trainer's restructuring (8833bb3), the same recipe
FIGURES = {
    "teachers": ["exact-default-old", "net-default-old", "net-default"],
    "net-lr": ["net-default-old", "net-lr3e-4-old", "net-cosine-old"],
    "net-fake": ["net-default", "net-fake2", "net-fakelr3e-4"],
    "net-recipe": ["net-default", "net-ema-long", "net-alpha1.0", "net-batch128", "net-tmax400", "net-isig1"],
    "width": ["net-default", "net-width64", "exact-default-old", "exact-width64"],
}


def base_name(name: str) -> str:
    m = SEED.match(name)
    return m.group("base") if m else name


def load_runs(root: Path) -> dict[str, list[dict]]:
    """Finished runs grouped by base name: ``{base: [{"final": ..., "records": [...]}, ...]}``."""
    from sidkernels.distill.report import read_jsonl
    groups: dict[str, list[dict]] = {}
    for final in sorted(root.glob("*/final.json")):
        info = json.loads(final.read_text())
        by_kimg = {r["kimg"]: r for r in read_jsonl(final.parent / "metrics.jsonl")}  # a resume may repeat reports
        groups.setdefault(base_name(final.parent.name), []).append(
            {"final": info, "records": [by_kimg[k] for k in sorted(by_kimg)]})
    return groups


def _stat(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def export(path: Path, root: Path, ref: dict, machine: str) -> None:
    """Every finished run under ``root`` (``final.json`` plus its reports as ``curve``) and the references."""
    from sidkernels.distill.report import read_jsonl
    runs = {}
    for final in sorted(root.glob("*/final.json")):
        by_kimg = {r["kimg"]: r for r in read_jsonl(final.parent / "metrics.jsonl")}
        curve = [{k: by_kimg[x][k] for k in ("kimg", *KEYS)} for x in sorted(by_kimg)]
        runs[final.parent.name] = dict(json.loads(final.read_text()), curve=curve)
    path.write_text(json.dumps({"machine": machine, "reference": ref, "runs": runs}, indent=1) + "\n")


def table(groups: dict[str, list[dict]], ref: dict) -> str:
    teacher_fd = {"exact": ref["exact_heun35_10000"]["fd"], "net": ref["network_heun35_10000"]["fd"]}
    lines = ["| configuration | seeds | kimg | FD (2000, last report) | FD (10k) | FD / teacher's (10k) | "
             "NLL (10k) | class KL (10k) | wall min (contended) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, runs in groups.items():
        fd2k = [r["final"]["last_report"]["fd"] for r in runs]
        big = {k: [r["final"][BIG][k] for r in runs] for k in KEYS}
        ratio = [v / teacher_fd[name.split("-")[0]] for v in big["fd"]]
        wall = [r["final"]["wall_s_this_session"] / 60 for r in runs if not r["final"]["resumed"]]
        lines.append(f"| {name} | {len(runs)} | {runs[0]['final']['kimg']:.0f} | {_stat(fd2k, 3)} | "
                     f"{_stat(big['fd'], 3)} | {_stat(ratio, 2)} | {_stat(big['nll'], 2)} | "
                     f"{_stat(big['class_kl'], 4)} | {_stat(wall, 0) if wall else 'resumed'} |")
    return "\n".join(lines)


def reference_table(ref: dict) -> str:
    rows = [("network teacher, Heun 35 NFE", "network_heun35"), ("exact teacher, Heun 35 NFE", "exact_heun35"),
            ("exact mixture samples", "mixture_samples")]
    lines = ["| reference | FD (2000) | FD (10k) | NLL (10k) | class KL (10k) |", "|---|---|---|---|---|"]
    for label, key in rows:
        a, b = ref[f"{key}_2000"], ref[f"{key}_10000"]
        lines.append(f"| {label} | {a['fd']:.3f} | {b['fd']:.3f} | {b['nll']:.2f} | {b['class_kl']:.4f} |")
    return "\n".join(lines)


def curves(runs: list[dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """kimg and the seed-mean of each metric at the reports every run of the group has."""
    common = sorted(set.intersection(*({r["kimg"] for r in run["records"]} for run in runs)))
    values = {k: np.mean([[next(r[k] for r in run["records"] if r["kimg"] == x) for x in common] for run in runs], 0)
              for k in KEYS}
    return np.array(common), values


def figure(path: Path, names: list[str], groups: dict, ref: dict) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    present = [n for n in names if n in groups]
    if not present:
        return False
    fig, axes = plt.subplots(1, len(KEYS), figsize=(12, 3.4))
    for name in present:
        kimg, values = curves(groups[name])
        label = name + (f" ({len(groups[name])} seeds)" if len(groups[name]) > 1 else "")
        for ax, key in zip(axes, KEYS):
            ax.plot(kimg, values[key], marker="o", ms=2.5, lw=1.2, label=label)
    teachers = {n.split("-")[0] for n in present}
    for ax, key in zip(axes, KEYS):
        if "net" in teachers:
            ax.axhline(ref["network_heun35_2000"][key], color="gray", ls="--", lw=1, label="network teacher, Heun 35")
        if "exact" in teachers:
            ax.axhline(ref["exact_heun35_2000"][key], color="black", ls=":", lw=1, label="exact teacher, Heun 35")
        ax.set_title(f"{key} (2000 samples)")
        ax.set_xlabel("kimg")
        if key in ("fd", "class_kl"):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/study"))
    parser.add_argument("--out", type=Path, default=Path("docs/study"))
    parser.add_argument("--json", type=Path, help="write the runs and references into this file")
    parser.add_argument("--machine", default="", help="the machine and versions, recorded in --json")
    args = parser.parse_args()
    ref = json.loads((args.root / "reference.json").read_text())
    groups = load_runs(args.root)
    print(reference_table(ref), end="\n\n")
    print(table(groups, ref))
    args.out.mkdir(parents=True, exist_ok=True)
    for group, names in FIGURES.items():
        if figure(args.out / f"study-{group}.png", names, groups, ref):
            print(f"wrote {args.out / f'study-{group}.png'}")
    if args.json:
        export(args.json, args.root, ref, args.machine)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
