"""Benchmark the ops, the network and SiD training end to end; draw figures; regenerate the README block.

Full suites need a CUDA GPU and write ``results.csv``, ``devices.json`` and PNG figures to
``benchmarks/results/`` of the source checkout (``--out`` elsewhere).  ``--quick`` is a CPU smoke test
(tiny sizes, eager and compile providers, rows labelled ``cpu-quick``, written to a temporary folder).
``--plots-only`` redraws the figures from a CSV; ``--report`` rewrites the README's
``<!-- bench:start -->``/``<!-- bench:end -->`` block from it.  See ``benchmarks/README.md``.
"""
from __future__ import annotations

from sidkernels.bench.e2e import LEVERS, ROW_SETS
from sidkernels.ops import OPS


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help="smoke test: tiny sizes, runs on the CPU, results go to a temporary folder")
    p.add_argument("--suite", help="comma-separated suites: kernels, network, e2e (default: all three)")
    p.add_argument("--out", help="output folder (default: benchmarks/results of the checkout; --quick: a temp dir)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu (default: auto)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the figures after the run")
    p.add_argument("--plots-only", action="store_true", help="only redraw the figures from --csv")
    p.add_argument("--report", action="store_true", help="only rewrite the README results block from --csv")
    p.add_argument("--csv", help="results CSV for --plots-only / --report (default: OUT/results.csv)")
    p.add_argument("--readme", help="README to rewrite with --report (default: the checkout's README.md)")
    k = p.add_argument_group("kernel suite")
    k.add_argument("--resume", action="store_true",
                   help="skip the cases this GPU already measured at this commit (continue a stopped run)")
    k.add_argument("--budget-s", type=float, default=None,
                   help="start no new case after this many seconds; the run then exits with status 3 "
                        "and --resume continues it")
    k.add_argument("--ops", help=f"comma-separated ops of {', '.join(OPS)} (default: all)")
    k.add_argument("--providers", help="eager, compile, triton, cuda (default: all; unavailable ones are skipped)")
    k.add_argument("--modes", help="forward, backward, full (default: all)")
    k.add_argument("--shapes", help="shape sets: cifar, 64px, latent, sweep (default: all; --quick: tiny)")
    k.add_argument("--dtypes", help="bf16, fp32, fp16 (default: bf16,fp32)")
    k.add_argument("--compile-mode", help="torch.compile mode of the compile provider "
                                          "(default on CUDA: max-autotune-no-cudagraphs)")
    k.add_argument("--warmup", type=float, default=25, help="do_bench warm-up in ms (default 25)")
    k.add_argument("--rep", type=float, default=100, help="do_bench repetition time in ms (default 100)")
    n = p.add_argument_group("network suite")
    n.add_argument("--network-presets", help="network presets (default: cifar10-uncond)")
    n.add_argument("--network-rows", help="official, bf16+cl, bf16+cl+compile (default: all)")
    n.add_argument("--network-batch", type=int, help="batch (default 128; --quick: 4)")
    e = p.add_argument_group("end-to-end suite")
    e.add_argument("--presets", help="SiD presets (default: cifar10-uncond,ffhq64; --quick: mixture)")
    e.add_argument("--rows", help=f"rows or row sets {sorted(ROW_SETS)}: official, ours, official+LEVER, "
                                  f"ours-LEVER with LEVER in {', '.join(LEVERS)} (default: default)")
    e.add_argument("--e2e-warmup", type=int, help="untimed iterations per row (default 2; --quick: 1)")
    e.add_argument("--e2e-iters", type=int, help="timed iterations per row (default 5; --quick: 2)")
    e.add_argument("--batch", type=int, help="global batch (default: the preset's; --quick: 8)")
    e.add_argument("--batch-gpu", type=int, help="micro-batch (default: the preset's)")


def run(args) -> int:
    from sidkernels.bench.runner import run as run_bench

    return run_bench(args)
