"""The ``sidkernels`` command: one subcommand per module in :mod:`sidkernels.commands`."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module in sidkernels.commands exposing ``add_arguments(parser)`` and ``run(args)``
COMMANDS = {
    "distill": "distill",
    "selfcheck": "selfcheck",
    "convert": "convert",
    "project": "project",
    "sample": "sample",
    "bench": "bench",
    "fid": "fid",
    "fid-ref": "fid_ref",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidkernels", description="Fused kernels for SiD diffusion distillation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"sidkernels.commands.{module_name}")
        p = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0], description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
