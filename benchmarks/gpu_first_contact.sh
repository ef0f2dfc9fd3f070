#!/usr/bin/env bash
# The first run on a lent GPU in one command of at most 510 s (benchmarks/first_contact.py says what it does).
#   bash benchmarks/gpu_first_contact.sh            # on the GPU machine: results into $OUT
#   bash benchmarks/gpu_first_contact.sh --dry-run  # anywhere: the stages, case counts, budgets and commands
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" benchmarks/first_contact.py "$@"
