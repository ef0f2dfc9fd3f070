"""The long-format results CSV: one measured quantity per row (Liger's data model, plus the run's torch,
triton, commit and time stamp).

Columns (:data:`COLUMNS`)::

    suite       kernels | network | e2e
    op          kernels: an op of sidkernels.ops.OPS, or copy (the baseline);
                network / e2e: the preset name; e2e also: matmul (the measured bf16 peak)
    provider    kernels: eager | compile | triton | cuda (copy rows: torch);  network / e2e: the row name
    mode        forward | backward | full (forward + backward) | d2d (copy) | step (e2e iteration)
    shape_name  cifar | 64px | latent | sweep | tiny | bytes (copy rows) | the e2e batch label
    shape       e.g. 256x3x32x32 (copy rows: the bytes moved; matmul: MxNxK)
    dtype       bf16 | fp32 | ...
    metric      see METRICS
    unit        us | ms | B | GB/s | % | MiB | images/s | TFLOP | TFLOP/s | reason
    p50 p20 p80 median and 20th/80th percentiles; a single-valued metric repeats its value; empty for skips
    gpu         CUDA device name; "cpu-quick" / "quick:NAME" for smoke runs (never published)
    torch triton commit timestamp   the run's environment (timestamp: UTC ISO 8601)
    extra       JSON: settings of the row (compile mode, batch, levers, skip reason, ...)

A provider that cannot run (no GPU, no CUDA extension, a failure) gets one ``metric="skipped"`` row with
the reason in ``extra``.  Writing is an upsert: a new row replaces the stored row with the same key
(:data:`KEY`), so a rerun refreshes its own rows and leaves other GPUs' rows alone.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Iterable

from sidkernels.bench.env import RunEnv
from sidkernels.bench.timing import Quantiles

COLUMNS = ("suite", "op", "provider", "mode", "shape_name", "shape", "dtype", "metric", "unit", "p50", "p20",
           "p80", "gpu", "torch", "triton", "commit", "timestamp", "extra")
KEY = ("suite", "op", "provider", "mode", "shape_name", "shape", "dtype", "metric", "gpu")
CASE = ("suite", "op", "provider", "mode", "shape_name", "shape", "dtype", "gpu")

METRICS = {
    "time_us": "us", "time_graphed_us": "us", "time_ms": "ms", "bytes": "B", "gbps": "GB/s", "pct_copy": "%", "peak_mem_mib": "MiB",
    "images_per_s": "images/s", "model_tflop": "TFLOP", "tflops": "TFLOP/s", "mfu_pct": "%",
    "skipped": "reason",
}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, int):
        return str(v)
    return f"{v:.6g}"


def shape_str(shape: Iterable[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


class ResultsCSV:
    """A results CSV opened for upserts; :meth:`flush` rewrites it atomically (call it after each case, so
    an interrupted run keeps what it measured)."""

    def __init__(self, path: Path, env: RunEnv):
        self.path = Path(path)
        self.env = env
        self.rows: dict[tuple, dict] = {}
        for row in read_rows(self.path):
            self.rows[tuple(row[k] for k in KEY)] = row

    def add(self, *, suite: str, op: str, provider: str, mode: str, shape_name: str, shape: str, dtype: str,
            metric: str, value: Quantiles | float | int | None, extra: dict | None = None) -> dict:
        """Store one measurement (``value``: quantiles, or one number for a single-valued metric)."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; add it to METRICS with its unit")
        q = value if isinstance(value, Quantiles) else Quantiles(value, value, value)
        row = dict(suite=suite, op=op, provider=provider, mode=mode, shape_name=shape_name, shape=shape,
                   dtype=dtype, metric=metric, unit=METRICS[metric], p50=_fmt(q.p50), p20=_fmt(q.p20),
                   p80=_fmt(q.p80), gpu=self.env.gpu, torch=self.env.torch, triton=self.env.triton,
                   commit=self.env.commit, timestamp=self.env.timestamp,
                   extra=json.dumps(extra or {}, sort_keys=True, separators=(",", ":")))
        case = tuple(row[k] for k in CASE)
        if metric != "skipped":  # a measurement supersedes an earlier skip of the same case
            self.rows.pop(case[:7] + ("skipped", case[7]), None)
        self.rows[tuple(row[k] for k in KEY)] = row
        return row

    def measured(self, metric: str = "time_us", **case) -> bool:
        """Whether this run's GPU already has ``metric`` for ``case`` from this commit (what ``--resume`` skips)."""
        row = self.rows.get(tuple(case[k] for k in KEY[:7]) + (metric, self.env.gpu))
        return row is not None and row["commit"] == self.env.commit

    def skip(self, *, reason: str, **case) -> dict:
        """Record that a case could not run, and why."""
        return self.add(metric="skipped", value=None, extra={"reason": reason}, **case)

    def flush(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows.values())
        tmp.replace(self.path)
        return self.path


def read_rows(path: Path) -> list[dict]:
    """All rows of a results CSV (strings, as stored); [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not a sidkernels results CSV: missing columns {sorted(missing)}")
        return list(reader)


def value(row: dict, quantile: str = "p50") -> float | None:
    """A row's quantile as a float (None when empty)."""
    text = row.get(quantile, "")
    return float(text) if text not in ("", None) else None


def extra(row: dict) -> dict:
    return json.loads(row.get("extra") or "{}")
