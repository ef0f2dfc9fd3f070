"""Figures drawn from the results CSV alone (never during a run), one set per GPU label.

* ``kernels-gbps-GPU-DTYPE.png``    logical GB/s per provider, op x mode grid, at the named shapes
  (bars: median, whiskers: p20-p80);
* ``kernels-speedup-GPU-DTYPE.png`` speed-up of each provider over eager (median times), same grid;
* ``kernels-sweep-GPU-DTYPE.png``   GB/s against bytes moved for the size sweep, with the measured
  device-to-device copy as the ceiling line;
* ``e2e-levers-GPU.png``            SiD images/s per lever row and preset, speed-up over ``official``;
* ``network-GPU.png``               network forward+backward images/s per row.

Every figure carries its GPU, the date of its newest row, torch/triton and the commit; figures of smoke
runs (``cpu-quick``, ``quick:...``) say in their title that they are not measurements.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from sidkernels.bench.env import is_smoke
from sidkernels.bench.results import read_rows, value
from sidkernels.ops import OPS

PROVIDER_ORDER = ("eager", "compile", "triton", "cuda")
MODE_ORDER = ("forward", "backward", "full")
OP_ORDER = tuple(OPS)
SHAPE_ORDER = ("cifar", "64px", "latent", "tiny")
COLORS = {"eager": "#7f7f7f", "compile": "#1f77b4", "triton": "#d62728", "cuda": "#2ca02c", "copy": "#000000"}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _ordered(values, order) -> list:
    values = set(values)
    return [v for v in order if v in values] + sorted(values - set(order))


def _title(rows: list[dict], what: str) -> str:
    r = max(rows, key=lambda row: row["timestamp"])
    head = f"{what}\n{r['gpu']} | {r['timestamp'][:10]} | torch {r['torch']}, triton {r['triton']} | {r['commit']}"
    if is_smoke(r["gpu"]):
        head = "SMOKE TEST, not a performance measurement\n" + head
    return head


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _grid(plt, nrows: int, ncols: int):
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    return fig, axes


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _errors(rows: list[dict]):
    lo = [max(value(r) - value(r, "p20"), 0) for r in rows]
    hi = [max(value(r, "p80") - value(r), 0) for r in rows]
    return [lo, hi]


def _kernel_bars(plt, rows: list[dict], dtype: str, out: Path, speedup: bool) -> Path | None:
    rows = [r for r in rows if r["dtype"] == dtype and r["shape_name"] not in ("sweep", "bytes")]
    metric = "time_us" if speedup else "gbps"
    cells = defaultdict(dict)  # (op, mode) -> {(shape_name, provider): row}
    for r in rows:
        if r["metric"] == metric:
            cells[r["op"], r["mode"]][r["shape_name"], r["provider"]] = r
    if not cells:
        return None
    ops = _ordered({op for op, _ in cells}, OP_ORDER)
    modes = _ordered({m for _, m in cells}, MODE_ORDER)
    fig, axes = _grid(plt, len(ops), len(modes))
    for i, op in enumerate(ops):
        for j, mode in enumerate(modes):
            ax, cell = axes[i][j], cells.get((op, mode), {})
            shapes = _ordered({s for s, _ in cell}, SHAPE_ORDER)
            providers = _ordered({p for _, p in cell}, PROVIDER_ORDER)
            if speedup:
                providers = [p for p in providers if p != "eager"]
            width = 0.8 / max(len(providers), 1)
            for k, p in enumerate(providers):
                xs, ys, errs = [], [], []
                for s_i, s in enumerate(shapes):
                    r = cell.get((s, p))
                    if r is None:
                        continue
                    xs.append(s_i + (k - (len(providers) - 1) / 2) * width)
                    if speedup:
                        base = cell.get((s, "eager"))
                        ys.append(value(base) / value(r) if base is not None else float("nan"))
                    else:
                        ys.append(value(r))
                        errs.append(r)
                ax.bar(xs, ys, width, label=p, color=COLORS.get(p),
                       yerr=None if speedup or not errs else _errors(errs), capsize=2)
            if speedup:
                ax.axhline(1.0, color="black", lw=0.8, ls="--")
            ax.set_xticks(range(len(shapes)), shapes)
            ax.set_title(f"{op} / {mode}", fontsize=9)
            ax.set_ylabel("speed-up over eager" if speedup else "logical GB/s", fontsize=8)
            ax.legend(fontsize=7)
    fig.suptitle(_title(rows, f"kernels {dtype}: " + ("speed-up over eager" if speedup else "GB/s")), fontsize=9)
    return _save(plt, fig, out)


def _kernel_sweep(plt, rows: list[dict], copies: list[dict], dtype: str, out: Path) -> Path | None:
    rows = [r for r in rows if r["dtype"] == dtype and r["shape_name"] == "sweep"]
    by_case = defaultdict(dict)  # (op, mode, provider, shape) -> metric -> row
    for r in rows:
        by_case[r["op"], r["mode"], r["provider"], r["shape"]][r["metric"]] = r
    series = defaultdict(list)  # (op, mode, provider) -> [(bytes, row)]
    for (op, mode, provider, _), metrics in by_case.items():
        if "gbps" in metrics and "bytes" in metrics:
            series[op, mode, provider].append((value(metrics["bytes"]), metrics["gbps"]))
    if not series:
        return None
    copy_line = sorted((float(r["shape"]), value(r)) for r in copies if r["metric"] == "gbps")
    ops = _ordered({k[0] for k in series}, OP_ORDER)
    modes = _ordered({k[1] for k in series}, MODE_ORDER)
    fig, axes = _grid(plt, len(ops), len(modes))
    for i, op in enumerate(ops):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            points = [b for (o, m, _), pts in series.items() if (o, m) == (op, mode) for b, _ in pts]
            for p in _ordered({k[2] for k in series if k[:2] == (op, mode)}, PROVIDER_ORDER):
                pts = sorted(series[op, mode, p], key=lambda t: t[0])
                ax.plot([b for b, _ in pts], [value(r) for _, r in pts], marker="o", ms=3, label=p,
                        color=COLORS.get(p))
            if points:
                lo, hi = min(points), max(points)
                line = [(b, g) for b, g in copy_line if lo <= b <= hi]
                if line:
                    ax.plot(*zip(*line), ls="--", color=COLORS["copy"], lw=1, label="D2D copy")
            ax.set_xscale("log")
            ax.set_title(f"{op} / {mode}", fontsize=9)
            ax.set_xlabel("logical bytes moved", fontsize=8)
            ax.set_ylabel("GB/s", fontsize=8)
            ax.legend(fontsize=7)
    fig.suptitle(_title(rows, f"kernels {dtype}: bandwidth sweep"), fontsize=9)
    return _save(plt, fig, out)


def _row_bars(plt, rows: list[dict], suite: str, out: Path) -> Path | None:
    latest: dict[tuple, dict] = {}  # one row per (preset, row name): the newest
    for r in rows:
        if r["suite"] == suite and r["metric"] == "images_per_s":
            key = (r["op"], r["provider"])
            if key not in latest or r["timestamp"] >= latest[key]["timestamp"]:
                latest[key] = r
    rows = list(latest.values())
    if not rows:
        return None
    presets = sorted({r["op"] for r in rows})
    fig, axes = plt.subplots(1, len(presets), figsize=(6.5 * len(presets), 0.45 * max(
        len([r for r in rows if r["op"] == p]) for p in presets) + 1.5), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        mine = [r for r in rows if r["op"] == preset]
        official = next((value(r) for r in mine if r["provider"] == "official"), None)
        ys = list(range(len(mine)))
        ax.barh(ys, [value(r) for r in mine], xerr=_errors(mine), capsize=2,
                color=["#7f7f7f" if r["provider"] == "official" else "#1f77b4" for r in mine])
        ax.set_yticks(ys, [r["provider"] for r in mine], fontsize=8)
        ax.invert_yaxis()
        if official:
            for y, r in zip(ys, mine):
                ax.annotate(f" x{value(r) / official:.2f}", (value(r, "p80"), y), va="center", fontsize=7)
            ax.set_xlim(0, 1.18 * max(value(r, "p80") for r in mine))
        ax.set_xlabel("images/s" + (" (generator images per iteration / time)" if suite == "e2e" else ""),
                      fontsize=8)
        ax.set_title(preset, fontsize=9)
    what = "SiD iteration throughput by speed lever" if suite == "e2e" else "network forward+backward"
    fig.suptitle(_title(rows, what), fontsize=9)
    return _save(plt, fig, out)


def figures_for(folder: Path, gpu: str) -> list[Path]:
    """The figures of ``gpu`` that exist in ``folder`` (exact names, so no other label's figures match)."""
    pattern = re.compile(rf"^(kernels-(gbps|speedup|sweep)-{re.escape(slug(gpu))}-[a-z0-9]+|"
                         rf"(e2e-levers|network)-{re.escape(slug(gpu))})\.png$")
    return sorted(p for p in Path(folder).glob("*.png") if pattern.match(p.name))


def draw_all(csv_path: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw every figure the CSV has data for into ``out_dir`` (default: the CSV's folder)."""
    plt = _plt()
    rows = [r for r in read_rows(csv_path) if r["metric"] != "skipped"]
    out_dir = Path(out_dir or Path(csv_path).parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for gpu in sorted({r["gpu"] for r in rows}):
        mine = [r for r in rows if r["gpu"] == gpu]
        kernels = [r for r in mine if r["suite"] == "kernels" and r["op"] != "copy"]
        copies = [r for r in mine if r["suite"] == "kernels" and r["op"] == "copy"]
        tag = slug(gpu)
        for dtype in sorted({r["dtype"] for r in kernels}):
            for path in (_kernel_bars(plt, kernels, dtype, out_dir / f"kernels-gbps-{tag}-{dtype}.png", False),
                         _kernel_bars(plt, kernels, dtype, out_dir / f"kernels-speedup-{tag}-{dtype}.png", True),
                         _kernel_sweep(plt, kernels, copies, dtype, out_dir / f"kernels-sweep-{tag}-{dtype}.png")):
                if path is not None:
                    written.append(path)
        for suite, name in (("e2e", "e2e-levers"), ("network", "network")):
            path = _row_bars(plt, mine, suite, out_dir / f"{name}-{tag}.png")
            if path is not None:
                written.append(path)
    return written
