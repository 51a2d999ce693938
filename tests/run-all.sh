#!/usr/bin/env bash
# Everything `make test` runs, in order. Each tier prints its own summary; any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_NOCOLOR=1 PY_COLORS=0

step() { printf '\n=== %s\n' "$*"; }

step "unit tests (pytest, coverage of plugins/)"
python -m pytest tests/unit -q -p no:cacheprovider --cov=plugins --cov-report=term:skip-covered \
  --cov-fail-under=80

step "fresh machine: install-deps, make targets, make test tiers and lab mode in a pristine Debian 12 container"
bash tests/fresh-machine/run.sh

step "ansible-lint (production profile)"
ansible-lint --profile production

step "shellcheck (every shell script of the checkout)"
bash tests/shellcheck.sh

step "Prometheus alert rules (promtool check rules, promtool test rules)"
bash tests/monitoring/promtool-test.sh

step "ansible-test sanity"
bash tests/sanity.sh

step "collection build and offline install"
bash tests/integration/collection-install.sh

step "GPU host end to end against the NVML and vGPU simulators"
bash tests/integration/gpu-simulator.sh

step "ML workflow natively on loopback: PostgreSQL 15, MLflow, DDP training, registry gate, KServe server, verify, rollback"
bash tests/integration/mlops-native.sh

step "Molecule scenarios (podman)"
bash tests/run-molecule.sh

step "VMs end to end: golden image, lab mode, the minimal cluster + HPC stack under TCG, real jobs, idempotence, teardown"
bash tests/e2e/run.sh

step "VMs end to end, both clusters: config/mlops.yml (5 TCG VMs), site.yml with the ML pipeline, the printed inference command, the routes, the rollback drill, idempotence, teardown"
bash tests/e2e/mlops.sh
