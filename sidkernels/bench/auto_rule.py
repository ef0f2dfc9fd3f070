"""Derivation of the ``backend="auto"`` rule (:mod:`sidkernels._backend`) from the results CSV.

Rule: per op, the fused backend with the lower median forward+backward time in bf16 summed over the named
shapes cifar, 64px and latent, on the GPU of the newest kernel-suite run that measured both backends on all
three; ops without such measurements, and ties, stay Triton.  Smoke rows never count.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from sidkernels._backend import RULE_FILE
from sidkernels.bench.env import is_smoke
from sidkernels.bench.results import read_rows, value

FUSED = ("triton", "cuda")
SHAPES = ("cifar", "64px", "latent")
RULE_TEXT = ("per op, the fused backend with the lower median forward+backward time in bf16 summed over the "
             "named shapes cifar, 64px and latent, on the newest GPU run that measured both; otherwise triton")


def derive_rule(rows: list[dict]) -> dict:
    """``{"rule", "source", "ops": {op: backend}, "times_us": {op: {backend: summed median}}}``;
    ``ops`` is empty without GPU rows of both backends."""
    times = defaultdict(dict)  # (gpu, op) -> (provider, shape_name) -> median µs
    runs = defaultdict(list)   # gpu -> its rows
    for r in rows:
        if (r["suite"] != "kernels" or r["provider"] not in FUSED or r["metric"] != "time_us" or r["mode"] != "full"
                or r["dtype"] != "bf16" or r["shape_name"] not in SHAPES or is_smoke(r["gpu"])):
            continue
        times[r["gpu"], r["op"]][r["provider"], r["shape_name"]] = value(r)
        runs[r["gpu"]].append(r)
    complete = {(gpu, op): {p: sum(t[p, s] for s in SHAPES) for p in FUSED}
                for (gpu, op), t in times.items() if all((p, s) in t for p in FUSED for s in SHAPES)}
    if not complete:
        return {"rule": RULE_TEXT, "source": None, "ops": {}, "times_us": {}}
    gpu = max({g for g, _ in complete}, key=lambda g: max(r["timestamp"] for r in runs[g]))
    per_op = {op: t for (g, op), t in sorted(complete.items()) if g == gpu}
    newest = max(runs[gpu], key=lambda r: r["timestamp"])
    return {"rule": RULE_TEXT,
            "source": {key: newest[key] for key in ("gpu", "torch", "triton", "commit", "timestamp")},
            "ops": {op: "cuda" if t["cuda"] < t["triton"] else "triton" for op, t in per_op.items()},
            "times_us": {op: {p: round(v, 3) for p, v in t.items()} for op, t in per_op.items()}}


def write_rule(csv_path: Path, path: Path = RULE_FILE) -> dict:
    """Derive the rule from a results CSV and write it to ``path`` (through a temporary file); returns it."""
    rule = derive_rule(read_rows(csv_path))
    tmp = Path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rule, indent=1) + "\n")
    tmp.replace(path)
    return rule
