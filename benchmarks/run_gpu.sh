#!/usr/bin/env bash
# The full GPU benchmark run, as separate steps (each upserts its rows into OUT/results.csv, so any step can
# be run or re-run alone).  Usage: benchmarks/run_gpu.sh [STEP ...]   (no STEP: all, in this order)
#   kernels-named kernels-sweep network e2e-cifar e2e-64px figures report
# OUT (default benchmarks/results) is where results.csv, devices.json and the figures go; extra options
# for every suite step can be given in BENCH_ARGS (e.g. BENCH_ARGS="--compile-mode default").
# The kernel steps resume (they skip cases this GPU already measured at this commit); with KERNEL_BUDGET_S
# set they start no new case after that many seconds and exit with status 3: run the step again to go on.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
BENCH="python3 -m sidkernels bench --out $OUT"
KERNELS="$BENCH --suite kernels --resume ${KERNEL_BUDGET_S:+--budget-s $KERNEL_BUDGET_S}"
export PYTHONUNBUFFERED=1
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(kernels-named kernels-sweep network e2e-cifar e2e-64px figures report)
for step in "${steps[@]}"; do
  echo "=== $step"
  case "$step" in
    kernels-named) $KERNELS --shapes cifar,64px,latent --no-plots ${BENCH_ARGS:-} ;;
    kernels-sweep) $KERNELS --shapes sweep --no-plots ${BENCH_ARGS:-} ;;
    network)       $BENCH --suite network --no-plots ${BENCH_ARGS:-} ;;
    e2e-cifar)     $BENCH --suite e2e --presets cifar10-uncond --no-plots ${BENCH_ARGS:-} ;;
    e2e-64px)      $BENCH --suite e2e --presets ffhq64 --no-plots ${BENCH_ARGS:-} ;;
    figures)       $BENCH --plots-only ;;
    report)        python3 -m sidkernels bench --report --csv "$OUT/results.csv" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
