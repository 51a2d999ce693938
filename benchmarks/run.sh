#!/usr/bin/env bash
# Rerun the benchmarks of docs/benchmarks.md. --vm adds the VM ones (root; about 20 min under TCG):
# benchmarks/bringup.sh 3 (empty -> Slurm cluster answering srun -N2 hostname, the changed=0 re-run of
# site.yml and the teardown, three times, with medians).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
python benchmarks/inventory_bench.py --nodes 1000 --gpus 64 --repeat 3
python benchmarks/solver_bench.py --repeat 5
python benchmarks/fuzz_config.py --cases 20000 --seed nightly
if [ "${1:-}" = --vm ]; then
  bash benchmarks/bringup.sh 3
fi
