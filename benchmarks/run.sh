#!/usr/bin/env bash
# Rerun the benchmarks of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
python benchmarks/inventory_bench.py --nodes 1000 --gpus 64 --repeat 3
python benchmarks/solver_bench.py --repeat 5
