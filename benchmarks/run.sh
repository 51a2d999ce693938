#!/usr/bin/env bash
# Rerun the benchmarks of docs/benchmarks.md. --vm adds the VM ones (root; about 25 min under TCG):
# tests/e2e/run.sh prints each phase's time, among them empty -> Slurm cluster answering srun -N2 hostname
# and the idempotent re-run of site.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
python benchmarks/inventory_bench.py --nodes 1000 --gpus 64 --repeat 3
python benchmarks/solver_bench.py --repeat 5
if [ "${1:-}" = --vm ]; then
  bash tests/e2e/run.sh
fi
