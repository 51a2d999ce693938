#!/usr/bin/env bash
# End-to-end test of the two clusters and the ML workflow: config/mlops.yml (HPC controller + 2 compute
# nodes, cloud control plane + 1 worker, platform systemd) as real QEMU VMs in lab mode, driven by the
# playbooks:
#   site.yml (validate, host checks, images, lab up, 5 VMs, the HPC cluster, the cloud services:
#   PostgreSQL + MLflow on the control plane, the KServe model server on the worker, the routes between
#   the networks, then the pipeline: train on Slurm with DDP on 2 nodes -> register -> promote -> serve ->
#   verify over the inference API)
#   -> the inference command site.yml printed, run as printed
#   -> only the workflow's ports cross from the HPC network to the cloud network
#   -> with HS_E2E_ROLLBACK=1: mlops_rollback.yml (a bad model refused by the gate; forced, verify fails; the
#      previous champion back; not in make test: 13 min under TCG)
#   -> site.yml again (changed=0) -> destroy.yml -> nothing left.
# Needs what tests/e2e/run.sh needs, and the golden images hpc-base and cloud-base (images/build.sh).
# The lab is named "e2emlops".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/e2e-harness.sh
. tests/lib/e2e-harness.sh
e2e_init e2e-mlops e2emlops
e2e_require_lab curl
e2e_make_workdir

phase_start "golden images (hpc-base, cloud-base)"
e2e_image hpc-base HPC_IMAGE
e2e_image cloud-base CLOUD_IMAGE
phase_end

phase_start "work dir, key, cluster.yaml"
# shellcheck source=tests/lib/e2e-cluster.sh
. "$REPO/tests/lib/e2e-cluster.sh"
e2e_mlops_cluster_files "$REPO" "$WORK" "$LAB"
phase_end

phase_start "site.yml: both clusters and the ML pipeline"
ansible-playbook "${INV[@]}" playbooks/site.yml "${SITE_VARS[@]}" | tee "$WORK/site1.log"
for h in hpc-controller hpc-compute-01 hpc-compute-02 cloud-control-plane cloud-cpu-worker-01; do
  grep -Eq "^$h +: ok=[1-9].* failed=0" "$WORK/site1.log" || fail "$h did not pass site.yml"
done
grep -q "MLflow: *http://192.168.200.10:5000" "$WORK/site1.log" || fail "site.yml did not print the MLflow URL"
grep -q "Training run .* test accuracy" "$WORK/site1.log" || fail "site.yml did not train"
e2e_record_lab_pids
phase_end

phase_start "credentials: 0600 on the controller, never in the logs"
pwfile=$(find "$WORK/credentials" -name 'postgresql-*.password' | head -n 1)
[ -n "$pwfile" ] || fail "no PostgreSQL password file under $WORK/credentials"
[ "$(stat -c %a "$pwfile")" = 600 ] || fail "$pwfile has mode $(stat -c %a "$pwfile"), not 600"
! grep -qF "$(cat "$pwfile")" "$WORK/site1.log" || fail "the PostgreSQL password appears in site.yml's output"
phase_end

phase_start "the printed inference command, as printed"
cmd=$(sed -n 's/^ *"Inference: *\(.*\)",\?$/\1/p' "$WORK/site1.log" | head -n 1 | sed 's/\\"/"/g')
[ -n "$cmd" ] || fail "site.yml printed no inference command"
echo "$cmd"
answer=$(bash -c "$cmd") || fail "the printed inference command failed: $cmd"
echo "$answer"
echo "$answer" | "$REPO/.venv/bin/python" -c '
import json, sys
out = {o["name"]: o for o in json.load(sys.stdin)["outputs"]}
assert out["predictions"]["data"] == [0], out' || fail "the printed inference command did not answer 0 for the zero"
phase_end

phase_start "routes: the workflow's ports cross from the HPC network, nothing else"
hpc_ssh=(ssh -i "$WORK/id_ed25519" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR
         -o "ProxyCommand=ip netns exec $NETNS nc %h %p" hyperscaler@192.168.100.11)
# hpc-base has neither curl nor nc: a TCP connect from the guest's Python says open or closed.
probe=$("${hpc_ssh[@]}" python3 - 192.168.200.10 5000 22 5432 <<'PY'
import socket, sys
for port in map(int, sys.argv[2:]):
    with socket.socket() as s:
        s.settimeout(10)
        try:
            s.connect((sys.argv[1], port))
            print(port, "open")
        except OSError:
            print(port, "closed")
PY
)
echo "$probe"
[ "$(echo "$probe" | tr '\n' ' ')" = "5000 open 22 closed 5432 closed " ] \
  || fail "from hpc-compute-01 to the cloud control plane expected MLflow (5000) open, SSH (22) and PostgreSQL (5432) closed: $probe"
phase_end

# The drill on the VMs took 801 s under TCG (2026-12-03), which pushed make test past CI's 90 min: it runs with
# HS_E2E_ROLLBACK=1. tests/integration/mlops-native.sh (in make test) runs the same drill with the same programs
# natively: bad model refused, forced, verify fails, rollback, verify passes.
if [ "${HS_E2E_ROLLBACK:-0}" = 1 ]; then
  phase_start "mlops_rollback.yml: a bad model refused, forced, caught, rolled back"
  ansible-playbook "${INV[@]}" playbooks/mlops_rollback.yml | tee "$WORK/rollback.log"
  grep -q "refused by the gate" "$WORK/rollback.log" || fail "the gate did not refuse the bad model"
  grep -Eq "^cloud-control-plane +: ok=[1-9].* failed=0" "$WORK/rollback.log" || fail "mlops_rollback.yml failed"
  phase_end
else
  echo "=== e2e-mlops: mlops_rollback.yml NOT RUN on the VMs (HS_E2E_ROLLBACK=1 runs it, about 13 min under TCG;" \
    "tests/integration/mlops-native.sh ran the drill natively)"
fi

phase_start "site.yml again (idempotent)"
ansible-playbook "${INV[@]}" playbooks/site.yml "${SITE_VARS[@]}" | tee "$WORK/site2.log"
changed=$(recap_changed "$WORK/site2.log")
[ "$changed" = 0 ] || fail "second site.yml run reported changed=$changed (expected 0)"
phase_end

phase_start "destroy (destroy.yml)"
ansible-playbook "${INV[@]}" playbooks/destroy.yml | tee "$WORK/destroy.log"
phase_end

phase_start "nothing left"
e2e_nothing_left
phase_end

say "PASSED"
