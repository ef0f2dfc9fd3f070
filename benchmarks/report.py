"""Rewrite the README's results block (between ``<!-- bench:start -->`` and ``<!-- bench:end -->``) from
``benchmarks/results/results.csv``: ``sidkernels bench --report`` (:mod:`sidkernels.bench.report`).

Usage::

    python benchmarks/report.py                        # README.md of this checkout from benchmarks/results
    python benchmarks/report.py --csv PATH --readme PATH
"""
from __future__ import annotations

import sys

from sidkernels import cli

if __name__ == "__main__":
    sys.exit(cli.main(["bench", "--report", *sys.argv[1:]]))
