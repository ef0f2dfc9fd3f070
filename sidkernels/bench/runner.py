"""``sidkernels bench``: run the suites into the results CSV, write the device facts, draw the figures,
or regenerate the README block.

Output (``--out``, default ``benchmarks/results/`` of the source checkout, else ``./bench-results``):
``results.csv`` (:mod:`sidkernels.bench.results`), ``devices.json`` (NVML and torch device facts per GPU
label, :mod:`sidkernels.bench.device`) and the PNG figures (:mod:`sidkernels.bench.plots`).

``--quick`` is the smoke mode CI runs on the CPU: tiny shapes, providers ``eager``/``compile`` (``triton``
and ``cuda`` get skip rows saying why), a tiny network, two SiD iterations of the mixture preset; rows are
labelled ``cpu-quick`` (``quick:GPU`` on a GPU) and go to a temporary folder, never to
``benchmarks/results/``.  A full run needs a CUDA GPU and refuses to run without one.
"""
from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from sidkernels.bench import device as device_facts
from sidkernels.bench import e2e, kernels, network
from sidkernels.bench.env import RunEnv, preserved_torch_flags, repo_root, results_dir
from sidkernels.bench.results import ResultsCSV
from sidkernels.bench.timing import cpu_threads

SUITES = ("kernels", "network", "e2e")
CSV_NAME = "results.csv"
DEVICES_NAME = "devices.json"
INCOMPLETE = 3  # exit status of a run that the --budget-s time budget stopped early


def _split(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _choose(text: str | None, allowed, what: str, default) -> tuple:
    chosen = _split(text) or list(default)
    unknown = [c for c in chosen if c not in allowed]
    if unknown:
        raise SystemExit(f"sidkernels bench: unknown {what} {unknown}; choose from {list(allowed)}")
    return tuple(chosen)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def output_dir(out: str | None, quick: bool) -> Path:
    """Where this run writes: ``--out``; else a temporary folder (quick) or ``benchmarks/results``."""
    published = results_dir()
    if quick:
        path = Path(out) if out else Path(tempfile.mkdtemp(prefix="sidkernels-bench-quick-"))
        if _inside(path, published):
            raise SystemExit(f"sidkernels bench: --quick rows are smoke tests and never go under {published}; "
                             f"pick another --out")
        return path
    return Path(out) if out else (published or Path("bench-results"))


def _kernel_shapes(args, quick: bool) -> dict:
    table = kernels.QUICK_SHAPES if quick else kernels.SHAPES
    names = _choose(args.shapes, table, "shape set", table)
    return {name: table[name] for name in names}


def run_suites(args) -> int:
    quick = args.quick
    device = _device(args.device)
    if device.type != "cuda" and not quick:
        print("sidkernels bench: the benchmark suites need a CUDA GPU (CPU timings say nothing about GPU "
              "performance); run with --quick for the CPU smoke test.", file=sys.stderr)
        return 2
    suites = _choose(args.suite, SUITES, "suite", SUITES)
    out_dir = output_dir(args.out, quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = RunEnv.capture(device, quick)
    csv = ResultsCSV(out_dir / CSV_NAME, env)
    facts = dict(nvml=device_facts.nvml_facts(), torch_device=device_facts.torch_device_facts(),
                 torch=env.torch, triton=env.triton, commit=env.commit, timestamp=env.timestamp)
    device_facts.write_device_facts(out_dir / DEVICES_NAME, env.gpu, facts)
    print(f"# sidkernels bench{' --quick (smoke test, not a measurement)' if quick else ''}: {env.gpu} | "
          f"torch {env.torch} | triton {env.triton} | commit {env.commit} -> {out_dir}")
    cuda = device.type == "cuda"
    timing = dict(warmup_ms=args.warmup, rep_ms=args.rep) if cuda else {}
    if quick and cuda:
        timing = dict(warmup_ms=min(args.warmup, 5), rep_ms=min(args.rep, 20))
    errors: list = []
    started, incomplete = time.monotonic(), False
    with cpu_threads(None if cuda else 1), preserved_torch_flags():
        if "kernels" in suites:
            print("## kernels")
            suite = kernels.KernelSuite(
                csv, device, ops=_choose(args.ops, kernels.OPS, "op", kernels.OPS),
                providers=_choose(args.providers, kernels.PROVIDERS, "provider", kernels.PROVIDERS),
                modes=_choose(args.modes, kernels.MODES, "mode", kernels.MODES),
                shapes=_kernel_shapes(args, quick),
                dtypes=_choose(args.dtypes, kernels.DTYPES, "dtype", ("bf16", "fp32")),
                compile_mode=args.compile_mode or ("max-autotune-no-cudagraphs" if cuda else None),
                resume=args.resume, deadline=None if args.budget_s is None else started + args.budget_s, **timing)
            suite.run()
            errors += suite.errors
            if suite.stopped:
                print(f"## kernels: stopped at the {args.budget_s:g} s budget; the rows measured so far are in the "
                      f"CSV. Run the same command with --resume to measure the rest.")
                incomplete = True
        if "network" in suites and not incomplete:
            print("## network")
            suite = network.NetworkSuite(
                csv, device, presets=tuple(_split(args.network_presets) or network.PRESETS),
                rows=_choose(args.network_rows, network.ROWS, "network row", network.ROWS),
                batch=args.network_batch or (4 if quick else 128), quick=quick, timing=timing)
            suite.run()
            errors += suite.errors
        if "e2e" in suites and not incomplete:
            print("## e2e")
            suite = e2e.E2ESuite(
                csv, device,
                presets=tuple(_split(args.presets) or ((e2e.QUICK_PRESET,) if quick else e2e.PRESETS)),
                rows=tuple(e2e.expand_rows(args.rows or ("quick" if quick else "default"))),
                warmup=args.e2e_warmup if args.e2e_warmup is not None else (1 if quick else 2),
                iters=args.e2e_iters if args.e2e_iters is not None else (2 if quick else 5),
                batch=args.batch or (8 if quick else None), batch_gpu=args.batch_gpu,
                matmul_sizes=(256,) if quick else (4096, 8192, 16384), timing=timing)
            suite.run()
            errors += suite.errors
    path = csv.flush()
    print(f"results: {path}")
    if not args.no_plots:
        from sidkernels.bench.plots import draw_all
        for png in draw_all(path, out_dir):
            print(f"figure: {png}")
    if errors:
        print(f"\n{len(errors)} case(s) failed (recorded as skipped rows with the error):", file=sys.stderr)
        for case, trace in errors:
            print(f"--- {case}\n{trace}", file=sys.stderr)
        return 1
    return INCOMPLETE if incomplete else 0


def run(args) -> int:
    """Entry point of ``sidkernels bench`` (arguments: :func:`sidkernels.commands.bench.add_arguments`)."""
    if args.report:
        from sidkernels.bench.report import update_readme
        root = repo_root()
        readme = Path(args.readme) if args.readme else (root / "README.md" if root else None)
        csv = Path(args.csv) if args.csv else output_dir(args.out, quick=False) / CSV_NAME
        if readme is None:
            raise SystemExit("sidkernels bench --report: no source checkout found; pass --readme PATH")
        try:
            update_readme(readme, csv)
        except ValueError as e:
            print(f"sidkernels bench --report: {e}", file=sys.stderr)
            return 2
        print(f"rewrote the results block of {readme} from {csv}")
        from sidkernels.bench.auto_rule import write_rule
        rule_path = readme.parent / "sidkernels" / "auto_backend.json"
        if not rule_path.parent.is_dir():
            print(f"no sidkernels/ package beside {readme}: the backend='auto' rule was not written")
            return 0
        rule = write_rule(csv, rule_path)
        print(f"wrote {rule_path}: {rule['ops'] or 'no GPU measurements of both backends, triton for every op'}")
        return 0
    if args.plots_only:
        from sidkernels.bench.plots import draw_all
        csv = Path(args.csv) if args.csv else output_dir(args.out, quick=False) / CSV_NAME
        for png in draw_all(csv, Path(args.out) if args.out else csv.parent):
            print(f"figure: {png}")
        return 0
    try:
        return run_suites(args)
    except KeyboardInterrupt:
        print("interrupted; rows measured so far are in the CSV", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - a harness failure, not a case failure
        traceback.print_exc()
        return 1
