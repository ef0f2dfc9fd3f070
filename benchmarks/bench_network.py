"""Forward + backward of the CIFAR-10 DDPM++ network (EDMPrecond, 55.7M parameters), ours vs the official
recipe: the network suite of ``sidkernels bench`` (:mod:`sidkernels.bench.network`), same harness, same CSV.

Usage::

    python benchmarks/bench_network.py                 # GPU: batch 128, rows official, bf16+cl, bf16+cl+compile
    python benchmarks/bench_network.py --quick         # tiny smoke config on the CPU (numbers meaningless)
    python benchmarks/bench_network.py --batch 256 --providers official,bf16+cl

``--batch`` and ``--providers`` map to ``--network-batch`` and ``--network-rows``; every other option is
passed to ``sidkernels bench`` unchanged (``--out``, ``--warmup``/``--rep`` in ms, ``--no-plots``, ...).
"""
from __future__ import annotations

import argparse
import sys

from sidkernels import cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--providers")
    args, rest = parser.parse_known_args(argv)
    command = ["bench", "--suite", "network", *rest]
    if args.batch:
        command += ["--network-batch", str(args.batch)]
    if args.providers:
        command += ["--network-rows", args.providers]
    return cli.main(command)


if __name__ == "__main__":
    sys.exit(main())
