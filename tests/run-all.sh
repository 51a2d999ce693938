#!/usr/bin/env bash
# Everything `make test` runs, in order. Each tier prints its own summary; any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_NOCOLOR=1 PY_COLORS=0

step() { printf '\n=== %s\n' "$*"; }

# The fresh-machine tier runs, in a pristine Debian 12 container after scripts/install-deps, every tier that
# needs neither the network nor a VM: the unit tests with the coverage gate (make unit), ansible-lint, shellcheck,
# the promtool rule tests, the collection build + offline install and the GPU host end to end on the simulators.
# They run once, there (this machine's copy of them proved nothing the container's does not, and cost 5 min of
# the CI's 90); it prints each one's result lines.
#
# ansible-test sanity and the native ML workflow run beside it, one after the other: each tier of the two lanes is
# mostly one process, the machines have 2 cores, and the container shares nothing with them (its own root, network
# and checkout copy). Their output follows the fresh-machine tier's.
side_log=$(mktemp)
(
  set -e
  step "ansible-test sanity (beside the fresh-machine tier)"
  bash tests/sanity.sh
  step "ML workflow natively on loopback: PostgreSQL 15, MLflow, DDP training, registry gate, KServe server, verify, rollback (beside the fresh-machine tier)"
  bash tests/integration/mlops-native.sh
) >"$side_log" 2>&1 &
side_pid=$!
trap 'kill "$side_pid" 2>/dev/null || true; rm -f "$side_log"' EXIT

step "fresh machine: install-deps, make unit (coverage gate), ansible-lint, shellcheck, promtool, collection install, GPU simulators, make targets and lab mode in a pristine Debian 12 container"
fresh_rc=0
bash tests/fresh-machine/run.sh || fresh_rc=$?
side_rc=0
wait "$side_pid" || side_rc=$?
cat "$side_log"
trap - EXIT
rm -f "$side_log"
if [ "$fresh_rc" != 0 ] || [ "$side_rc" != 0 ]; then
  echo "run-all: FAILED: fresh-machine tier exit $fresh_rc, sanity + mlops-native lane exit $side_rc"
  exit 1
fi

step "Molecule scenarios (podman)"
bash tests/run-molecule.sh

step "VMs end to end: golden image, lab mode, the minimal cluster + HPC stack under TCG, real jobs, idempotence, teardown"
bash tests/e2e/run.sh

step "VMs end to end, both clusters: config/mlops.yml (5 TCG VMs), site.yml with the ML pipeline, the printed inference command, the routes, the rollback drill, idempotence, teardown"
bash tests/e2e/mlops.sh
