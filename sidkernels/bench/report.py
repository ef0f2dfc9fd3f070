"""The README's results section, generated from the results CSV.

:func:`update_readme` rewrites the text between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` (both
markers must already be in the README; nothing else is touched).  Only rows of real GPU runs are used:
smoke rows (``cpu-quick``, ``quick:...``) never reach the README.  Without such rows the block says that no
GPU results exist yet.  Per GPU it shows where and when the numbers were measured, a kernel table (bf16,
forward+backward, named shapes), the end-to-end lever table, the network table, and the figures drawn by
:mod:`sidkernels.bench.plots` that exist beside the CSV, each captioned with its GPU and date.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from sidkernels.bench.env import is_smoke
from sidkernels.bench.plots import OP_ORDER, PROVIDER_ORDER, SHAPE_ORDER, _ordered, figures_for
from sidkernels.bench.results import extra, read_rows, value

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
NO_RESULTS = ("_No GPU results yet._ The suites are built (`sidkernels bench`, see `benchmarks/README.md`); "
              "every number in this section will come from a run on a named GPU, with eager PyTorch and "
              "`torch.compile` measured side by side in the same run.")


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _dates(rows: list[dict]) -> str:
    days = sorted({r["timestamp"][:10] for r in rows})
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


def _kernel_table(rows: list[dict], dtype: str = "bf16", mode: str = "full") -> list[str]:
    cells = defaultdict(dict)  # (op, shape_name, shape) -> provider -> {metric: row}
    skips = defaultdict(set)  # provider -> reasons
    for r in rows:
        if r["suite"] != "kernels" or r["op"] == "copy" or r["dtype"] != dtype or r["mode"] != mode:
            continue
        if r["shape_name"] in ("sweep", "bytes"):
            continue
        if r["metric"] == "skipped":
            skips[r["provider"]].add(extra(r).get("reason", ""))
            continue
        cells[r["op"], r["shape_name"], r["shape"]].setdefault(r["provider"], {})[r["metric"]] = r
    if not cells:
        return []
    providers = _ordered({p for c in cells.values() for p in c} | set(skips), PROVIDER_ORDER)
    fused = [p for p in providers if p in ("triton", "cuda")]
    head = ["op", "shape"] + [f"{p} µs" for p in providers] + ["best fused", "GB/s", "% of copy", "× eager",
                                                               "× compile"]
    lines = [f"Kernels, {dtype}, forward + backward (median µs; GB/s = logical bytes / median time; % of a "
             f"device-to-device copy of the same bytes measured in the same run):", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    order = {op: i for i, op in enumerate(OP_ORDER)}
    shape_order = {s: i for i, s in enumerate(SHAPE_ORDER)}
    for op, shape_name, shape in sorted(cells, key=lambda k: (order.get(k[0], 99), shape_order.get(k[1], 99))):
        cell = cells[op, shape_name, shape]
        t = {p: value(cell[p]["time_us"]) for p in providers if "time_us" in cell.get(p, {})}
        row = [f"`{op}`", f"{shape_name} {shape}"] + [_fmt(t.get(p)) for p in providers]
        best = min((p for p in fused if p in t), key=t.get, default=None)
        if best is None:
            row += ["–"] * 5
        else:
            m = cell[best]
            row += [best, _fmt(value(m["gbps"]), 0) if "gbps" in m else "–",
                    _fmt(value(m["pct_copy"]), 0) if "pct_copy" in m else "–",
                    _fmt(t["eager"] / t[best], 2) if "eager" in t else "–",
                    _fmt(t["compile"] / t[best], 2) if "compile" in t else "–"]
        lines.append("| " + " | ".join(row) + " |")
    for p, reasons in sorted(skips.items()):
        lines.append(f"\n`{p}` skipped in some or all cases: {'; '.join(sorted(reasons))}")
    return lines + [""]


def _row_table(rows: list[dict], suite: str) -> list[str]:
    cases = defaultdict(dict)  # (preset, row) -> metric -> row
    for r in rows:
        if r["suite"] == suite and r["op"] != "matmul" and r["metric"] != "skipped":
            cases[r["op"], r["provider"]][r["metric"]] = r
    if not cases:
        return []
    e2e = suite == "e2e"
    head = ["preset", "row", "images/s", "× official", "ms / " + ("iteration" if e2e else "call"), "peak GiB"]
    head += ["MFU %"] if e2e else []
    title = ("End to end: one SiD iteration (fake-score update + generator update), random-init teacher, the "
             "preset's batch; images/s counts generator images; MFU = model FLOPs (torch.utils.flop_counter) / "
             "time / the bf16 matmul peak measured in the same run:" if e2e else
             "Network forward + backward (train mode, loss on the output, gradients to weights and input):")
    lines = [title, "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for (preset, name), m in cases.items():
        official = cases.get((preset, "official"), {}).get("images_per_s")
        ips = value(m["images_per_s"]) if "images_per_s" in m else None
        row = [preset, name, _fmt(ips, 1),
               _fmt(ips / value(official), 2) if ips and official is not None else "–",
               _fmt(value(m["time_ms"]), 1) if "time_ms" in m else "–",
               _fmt(value(m["peak_mem_mib"]) / 1024, 2) if "peak_mem_mib" in m else "–"]
        if e2e:
            row.append(_fmt(value(m["mfu_pct"]), 1) if "mfu_pct" in m else "–")
        lines.append("| " + " | ".join(row) + " |")
    if e2e:
        peaks = [r for r in rows if r["suite"] == "e2e" and r["op"] == "matmul" and r["metric"] == "tflops"]
        if peaks:
            best = max(peaks, key=value)
            lines.append(f"\nbf16 matmul peak measured in the same run: {_fmt(value(best), 0)} TFLOP/s "
                         f"({best['shape']}).")
    return lines + [""]


CAPTIONS = (("e2e-levers", "SiD iteration throughput by speed lever"),
            ("kernels-speedup", "kernel speed-up over eager"),
            ("kernels-gbps", "kernel logical GB/s"),
            ("kernels-sweep", "kernel GB/s over the size sweep, with the measured copy"),
            ("network", "network forward + backward"))


def _figures(results_dir: Path, gpu: str, readme_dir: Path | None) -> list[tuple[str, str]]:
    """(caption, link) of the README's figures of ``gpu``: all but the non-bf16 kernel figures."""
    found = []
    for png in figures_for(results_dir, gpu):
        if png.name.startswith("kernels-") and not png.stem.endswith("-bf16"):
            continue
        kind = next((k for k, _ in CAPTIONS if png.name.startswith(k + "-")), None)
        rank = [k for k, _ in CAPTIONS].index(kind)
        rel = os.path.relpath(png, readme_dir) if readme_dir is not None else png.name
        found.append((rank, dict(CAPTIONS)[kind] + (", bf16" if kind.startswith("kernels") else ""),
                      Path(rel).as_posix()))
    return [(caption, link) for _, caption, link in sorted(found)]


def _rel(path: Path, readme_dir: Path | None) -> str:
    return Path(os.path.relpath(path, readme_dir) if readme_dir is not None else path.name).as_posix()


def render(rows: list[dict], results_dir: Path | None = None, readme_dir: Path | None = None,
           csv_path: Path | None = None) -> str:
    """Markdown of the results section (the README block's content)."""
    real = [r for r in rows if not is_smoke(r["gpu"])]
    if not real:
        return NO_RESULTS
    out: list[str] = []
    data = f"`{_rel(csv_path, readme_dir)}`" if csv_path is not None else "the results CSV"
    facts = f"`{_rel(Path(results_dir) / 'devices.json', readme_dir)}`" if results_dir is not None else "devices.json"
    for gpu in sorted({r["gpu"] for r in real}):
        mine = [r for r in real if r["gpu"] == gpu]
        commits = ", ".join(f"`{c}`" for c in sorted({r["commit"] for r in mine}))
        versions = sorted({f"torch {r['torch']}, triton {r['triton']}" for r in mine})
        out += [f"### {gpu} ({_dates(mine)})", "",
                f"Measured by `sidkernels bench` on {gpu}, {_dates(mine)}; {'; '.join(versions)}; commit "
                f"{commits}. All rows (fp32, every mode, the size sweep): {data}; device facts (NVML): {facts}.",
                ""]
        out += _kernel_table(mine)
        out += _row_table(mine, "e2e")
        out += _row_table(mine, "network")
        if results_dir is not None:
            for caption, link in _figures(Path(results_dir), gpu, readme_dir):
                out += [f"![{caption}, {gpu}, {_dates(mine)}]({link})", "",
                        f"*{caption}: {gpu}, {_dates(mine)}.*", ""]
    return "\n".join(out).rstrip()


def update_readme(readme: Path, csv_path: Path, results_dir: Path | None = None) -> str:
    """Rewrite the README's ``bench`` block from ``csv_path``; returns the new block."""
    readme, csv_path = Path(readme), Path(csv_path)
    text = readme.read_text()
    i, j = text.find(START), text.find(END)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"{readme} has no '{START}' ... '{END}' block: add the two markers (in that order) "
                         f"where the results section goes, then run this again")
    block = render(read_rows(csv_path), results_dir or csv_path.parent, readme.parent, csv_path)
    new = text[:i + len(START)] + "\n" + block + "\n" + text[j:]
    if new != text:
        tmp = readme.with_suffix(readme.suffix + ".tmp")
        tmp.write_text(new)
        tmp.replace(readme)
    return block
