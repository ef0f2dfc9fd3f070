"""What a run leaves for people to look at: ``metrics.jsonl`` and a metrics plot (PNG)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def append_jsonl(path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def keep_rows(path, keep) -> int:
    """Rewrite the JSON-lines file ``path`` (atomically) with only the rows for which ``keep(row)`` holds;
    returns how many were dropped."""
    path = Path(path)
    rows = read_jsonl(path)
    kept = [row for row in rows if keep(row)]
    if len(kept) != len(rows):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
        tmp.replace(path)
    return len(rows) - len(kept)


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(records: list[dict], path, baseline: dict | None = None) -> Path | None:
    """Losses, FID (image presets) and (on the mixture) the exact metrics against kimg, one panel each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in ("fid", "fd", "nll", "class_kl", "idem_residual_rel", "heldout_rec", "loss_G", "loss_fake")
            if any(k in r for r in records)]
    if not records or not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2))
    for ax, key in zip(np.atleast_1d(axes), keys):
        pts = [(r["kimg"], r[key]) for r in records if key in r and math.isfinite(r[key])]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3,
                    label="G_ema (1 step)" if key in ("fid", "fd", "nll", "class_kl") else key)
        if key == "fid" and pts:
            ax.plot(*min(pts, key=lambda p: p[1]), "r*", ms=9, label="best")
        two = [(r["kimg"], r[f"{key}_2step"]) for r in records if f"{key}_2step" in r]
        if two:
            ax.plot(*zip(*two), marker="s", ms=3, label="G_ema (2 steps)")
        if baseline and key in baseline:
            ax.axhline(baseline[key], color="gray", ls="--", label=baseline.get("label", "teacher"))
        if key in ("fd", "fid"):
            ax.set_yscale("log")
        ax.set_title(_fid_title(records) if key == "fid" else key, fontsize=8 if key == "fid" else None)
        ax.set_xlabel("kimg")
        if ax.get_legend_handles_labels()[0]:  # a panel whose values are all NaN so far has nothing to label
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _fid_title(records: list[dict]) -> str:
    """The FID panel's title names its detector (the sha256 that the FID rows carry)."""
    sha = next((r["fid_detector_sha256"] for r in records if "fid_detector_sha256" in r), None)
    return f"fid (detector sha256 {sha[:12]}...)" if sha else "fid"
