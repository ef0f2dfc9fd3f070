#!/usr/bin/env bash
# The full GPU benchmark run, as separate steps (each upserts its rows into OUT/results.csv, so any step can
# be run or re-run alone).  Usage: benchmarks/run_gpu.sh [STEP ...]   (no STEP: all, in this order)
#   kernels-named kernels-sweep network e2e-cifar e2e-64px figures report
# OUT (default benchmarks/results) is where results.csv, devices.json and the figures go; extra options
# for every suite step can be given in BENCH_ARGS (e.g. BENCH_ARGS="--compile-mode default").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
BENCH="python3 -m sidkernels bench --out $OUT"
export PYTHONUNBUFFERED=1
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(kernels-named kernels-sweep network e2e-cifar e2e-64px figures report)
for step in "${steps[@]}"; do
  echo "=== $step"
  case "$step" in
    kernels-named) $BENCH --suite kernels --shapes cifar,64px,latent --no-plots ${BENCH_ARGS:-} ;;
    kernels-sweep) $BENCH --suite kernels --shapes sweep --no-plots ${BENCH_ARGS:-} ;;
    network)       $BENCH --suite network --no-plots ${BENCH_ARGS:-} ;;
    e2e-cifar)     $BENCH --suite e2e --presets cifar10-uncond --no-plots ${BENCH_ARGS:-} ;;
    e2e-64px)      $BENCH --suite e2e --presets ffhq64 --no-plots ${BENCH_ARGS:-} ;;
    figures)       $BENCH --plots-only ;;
    report)        python3 -m sidkernels bench --report --csv "$OUT/results.csv" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
