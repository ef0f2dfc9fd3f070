"""Redraw the figures from ``benchmarks/results/results.csv`` into the same folder:
``sidkernels bench --plots-only`` (:mod:`sidkernels.bench.plots`).

Usage::

    python benchmarks/plot.py                          # benchmarks/results/*.png
    python benchmarks/plot.py --csv PATH --out DIR
"""
from __future__ import annotations

import sys

from sidkernels import cli

if __name__ == "__main__":
    sys.exit(cli.main(["bench", "--plots-only", *sys.argv[1:]]))
