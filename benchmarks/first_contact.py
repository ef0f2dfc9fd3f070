"""The first run on a lent GPU, decisive in one call (``benchmarks/gpu_first_contact.sh`` runs this).

A lent GPU comes for minutes, each command at most 10 of them, so this is one command of at most 510 s in
stages of falling priority, each with its own time budget; a stage that overruns is stopped and the rest
still run (time a stage leaves unused passes to the next):

    install       the package (editable, no dependencies) and the CUDA extension built just in time
    correctness   the op suite on the GPU over torch/triton/cuda; every CUDA kernel under compute-sanitizer's
                  memcheck; one training step per preset with bf16 + torch.compile + the fused ops
    kernels       the kernel table: every op, bf16, forward+backward, the named shapes, eager/compile/triton/cuda
    e2e           SiD end to end on cifar10-uncond: official, official+bf16, ours (images/s, peak memory, MFU)

Everything lands in ``$OUT`` (at most 8 files): first_contact.log (every stage's output), summary.json (each
stage's status and time), tests.xml (the op suite's JUnit report), steps.json (the training steps),
results.csv and devices.json (the benchmark rows and device facts, in the schema of benchmarks/results/).
``--dry-run`` prints the stages, their case counts, budgets and commands on any machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOTAL_LIMIT_S = 510          # the whole run, inside one 10-minute command with room for the machine's start
KERNEL_SHAPES = "cifar,64px,latent"
E2E_PRESET = "cifar10-uncond"
E2E_ROWS = "official,official+bf16,ours"
OP_SUITE = ("tests/ops", "tests/cuda_ext/test_cuda_ops.py", "tests/test_compile.py")
OUT_FILES = ("first_contact.log", "summary.json", "tests.xml", "steps.json", "results.csv", "devices.json")


@dataclasses.dataclass
class Stage:
    name: str          # group/part
    budget_s: int
    command: list[str]  # "{budget}" in it becomes the seconds the stage is given (its budget plus carry)
    cases: str          # what it covers, counted


def step_cases() -> list[dict]:
    """The training steps of the correctness stage, most important first (a cut stage keeps the done ones):
    every preset with bf16 and the fused ops eagerly (seconds each: layouts, dtypes and devices of every
    network), then with torch.compile the mixture and CIFAR-10, SiDA and SIGN on the mixture, and CUDA graphs
    on CIFAR-10 (each compilation takes a minute or so, so not every preset is compiled in the budget)."""
    from sidkernels.distill.config import PRESETS
    cases = [dict(method="SiD", preset=p, compile=False) for p in PRESETS]
    cases += [dict(method="SiD", preset=p, compile=True) for p in ("mixture", "cifar10-uncond")]
    cases += [dict(method=m, preset="mixture", compile=True) for m in ("SiDA", "SIGN")]
    cases += [dict(method="SiD", preset="cifar10-uncond", compile=True, cuda_graphs=True)]
    return cases


def memcheck_calls() -> int:
    """The kernel calls of tests/cuda_ext/memcheck_ops.py (its shapes, each call also at a misaligned address)."""
    import torch

    from sidkernels.ops import OPS
    cases = ((3, 37), torch.float32), ((2, 3, 4, 5), torch.bfloat16)
    return 2 * sum(len(op.kernel_cases(shape, dtype, torch.device("cpu"))) for shape, dtype in cases
                   for op in OPS.values())


def stages(out: Path) -> list[Stage]:
    from sidkernels.bench import kernels
    from sidkernels.cuda_ext import build
    from sidkernels.ops import OPS

    py = sys.executable
    bench = [py, "-m", "sidkernels", "bench", "--out", str(out), "--no-plots"]
    shapes = sum(len(kernels.SHAPES[s]) for s in KERNEL_SHAPES.split(","))
    kernel_cases = len(OPS) * len(kernels.PROVIDERS) * shapes
    return [
        Stage("install/package", 30, [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                                      "."], "1 package, editable"),
        Stage("install/cuda", 60, [py, "-c", "import sidkernels.cuda_ext as c; print('CUDA extension:', c.load())"],
              f"{len(build.sources())} CUDA/C++ sources, built for the visible GPU"),
        Stage("correctness/ops", 90, [py, "-m", "pytest", "-q", "--maxfail=20", "-p", "no:cacheprovider",
                                      f"--junitxml={out / 'tests.xml'}", *OP_SUITE],
              f"the op suite on cuda ({', '.join(OP_SUITE)}): every op over torch/triton/cuda"),
        Stage("correctness/memcheck", 30, ["compute-sanitizer", "--tool", "memcheck", "--error-exitcode", "1", py,
                                           "-m", "tests.cuda_ext.memcheck_ops"],
              f"{memcheck_calls()} CUDA kernel calls under compute-sanitizer memcheck"),
        Stage("correctness/steps", 90, [py, str(Path(__file__).resolve()), "steps", "--out", str(out)],
              f"{len(step_cases())} training cases (bf16, fused ops, {sum(c['compile'] for c in step_cases())} "
              f"compiled; 2 steps each)"),
        Stage("kernels", 110, [*bench, "--suite", "kernels", "--shapes", KERNEL_SHAPES, "--dtypes", "bf16",
                               "--modes", "full", "--compile-mode", "default", "--resume", "--budget-s", "{budget}"],
              f"{len(OPS)} ops x {len(kernels.PROVIDERS)} providers ({', '.join(kernels.PROVIDERS)}) x {shapes} "
              f"shapes, bf16, forward+backward = {kernel_cases} cases"),
        Stage("e2e", 100, [*bench, "--suite", "e2e", "--presets", E2E_PRESET, "--rows", E2E_ROWS],
              f"{E2E_PRESET}: {len(E2E_ROWS.split(','))} rows ({E2E_ROWS}), 2 warm-up + 5 timed iterations"),
    ]


def dry_run(plan: list[Stage]) -> int:
    total = sum(s.budget_s for s in plan)
    print(f"{'stage':<22} {'budget_s':>8}  cases")
    for s in plan:
        print(f"{s.name:<22} {s.budget_s:>8}  {s.cases}")
        print(f"{'':<33}$ {shlex.join(s.command)}")
    print(f"total budget: {total} s (limit {TOTAL_LIMIT_S} s)")
    print(f"files in OUT: {', '.join(OUT_FILES)} ({len(OUT_FILES)})")
    return 0 if total <= TOTAL_LIMIT_S else 1


def run_stage(stage: Stage, budget_s: float, log) -> dict:
    """Run the stage's command for at most ``budget_s`` (then TERM to its process group, KILL 5 s later)."""
    started = time.monotonic()
    cmd = [a.replace("{budget}", f"{max(budget_s - 10, 1):.0f}") for a in stage.command]
    log.write(f"\n=== {stage.name}: $ {shlex.join(cmd)} (at most {budget_s:.0f} s)\n")
    log.flush()
    status = "ok"
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:  # e.g. no compute-sanitizer on PATH
        log.write(f"=== {stage.name}: cannot start: {exc}\n")
        return dict(stage=stage.name, status=f"not started ({exc.strerror})", seconds=0.0, budget_s=budget_s)
    try:
        code = proc.wait(timeout=budget_s)
        if code != 0:
            status = f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        status = "cut at its budget"
    log.write(f"=== {stage.name}: {status}\n")
    return dict(stage=stage.name, status=status, seconds=round(time.monotonic() - started, 1),
                budget_s=round(budget_s, 1))


def run_all(plan: list[Stage], out: Path) -> int:
    """Every stage in order, unused time passed on; install failures stop the run (nothing else can work)."""
    out.mkdir(parents=True, exist_ok=True)
    summary, carry = [], 0.0
    print(f"{'stage':<22} {'status':<20} {'seconds':>8}  budget", flush=True)
    with open(out / "first_contact.log", "a", buffering=1) as log:
        log.write(f"# first contact {time.strftime('%Y-%m-%d %H:%M:%S')}, python {sys.version.split()[0]}\n")
        for stage in plan:
            result = run_stage(stage, stage.budget_s + carry, log)
            carry = max(0.0, result["budget_s"] - result["seconds"])
            summary.append(result)
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(f"{result['stage']:<22} {result['status']:<20} {result['seconds']:>8.1f}  "
                  f"{result['budget_s']:.0f}", flush=True)
            if stage.name.startswith("install") and result["status"] != "ok":
                break
    return 0 if all(r["status"] == "ok" for r in summary) else 1


# ---------------------------------------------------------------------- the training steps (a stage command)
def one_step(case: dict, scratch: str) -> dict:
    """Two training steps of ``case`` on the GPU (one micro-batch each) with bf16 and the fused ops: the first
    step's time (compilation included), the second's, the losses and the peak memory."""
    import torch

    from sidkernels.distill import SiDATrainer, SiDTrainer, preset_config, sida_config
    from sidkernels.sign import SIGNTrainer, sign_config

    make = {"SiD": (SiDTrainer, preset_config), "SiDA": (SiDATrainer, sida_config),
            "SIGN": (SIGNTrainer, sign_config)}[case["method"]]
    preset = case["preset"]
    base = make[1](preset, teacher="random", out=scratch)
    micro = base.batch_gpu or base.batch
    cfg = make[1](preset, teacher="random", out=scratch, batch=micro, batch_gpu=micro,
                  precision="bf16", compile=case["compile"], fused=True, cuda_graphs=case.get("cuda_graphs", False),
                  teacher_eval_samples=0, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    trainer = make[0](cfg, progress=False)
    times, losses = [], []
    for _ in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        losses.append([float(v) for v in trainer.step()])
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    finite = all(v == v and abs(v) != float("inf") for pair in losses for v in pair)
    return dict(case, batch=micro, first_step_s=round(times[0], 2), second_step_s=round(times[1], 4),
                losses=losses, finite=finite, peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2 ** 30, 3))


def run_steps(out: Path) -> int:
    path, done, failed = out / "steps.json", [], 0
    scratch = tempfile.mkdtemp(prefix="sidkernels-steps-")  # nothing but steps.json goes to OUT
    for case in step_cases():
        try:
            result = one_step(case, scratch)
            failed += not result["finite"]
        except Exception as exc:  # one preset's failure must not hide the others
            import traceback
            traceback.print_exc()
            result, failed = dict(case, error=f"{type(exc).__name__}: {exc}"), failed + 1
        done.append(result)
        print(json.dumps(result), flush=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=2) + "\n")
        tmp.replace(path)
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", choices=["all", "steps"], default="all",
                   help="all stages (default), or only the training steps of the correctness stage")
    p.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "first-contact-out"),
                   help="output folder (default: $OUT, else ./first-contact-out)")
    p.add_argument("--dry-run", action="store_true", help="print the stages, case counts and budgets; run nothing")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    sys.path.insert(0, str(REPO))
    if args.what == "steps":
        return run_steps(out)
    plan = stages(out)
    return dry_run(plan) if args.dry_run else run_all(plan, out)


if __name__ == "__main__":
    sys.exit(main())
