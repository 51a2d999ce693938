#!/usr/bin/env bash
# Bring-up benchmark of docs/benchmarks.md (root; the golden image is built or taken from its cache
# first and not timed): config/minimal.yml's cluster as in the VM end to end (3 TCG VMs, one simulated
# GPU per compute node), RUNS times:
#   empty -> site.yml done -> first `srun -N2 hostname` answering from both compute nodes   (bring-up)
#   site.yml again, which must report changed=0                                            (re-run)
#   destroy.yml                                                                            (teardown)
# and prints each run and the medians, with the load average before each run.
#   benchmarks/bringup.sh [RUNS]        (default 3)
# ANSIBLE_STRATEGY=linear measures without Mitogen.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RUNS=${1:-3}
export PATH="$REPO/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$REPO/.build/collections"
export ANSIBLE_CONFIG="$REPO/ansible.cfg" ANSIBLE_NOCOLOR=1
LAB=bench
IMAGE_NAME=hpc-base
[ "$(id -u)" = 0 ] || { echo "bringup.sh: must run as root" >&2; exit 1; }
# shellcheck source=tests/lib/e2e-cluster.sh
. "$REPO/tests/lib/e2e-cluster.sh"
IMAGE=$(images/build.sh "$IMAGE_NAME" | tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["image"])')
WORK=$(mktemp -d /var/tmp/hs-bench.XXXXXX)
cleanup() {
  ansible-playbook "${INV[@]}" playbooks/destroy.yml >/dev/null 2>&1 || "$REPO/scripts/hyperscaler-lab" down "$LAB" >/dev/null 2>&1 || true
  rm -rf "$WORK" "/var/lib/aihow-hyperscaler/lab/$LAB"
}
trap cleanup EXIT
e2e_cluster_files "$REPO" "$WORK" "$LAB"
now() { date +%s.%N; }
secs() { python3 -c 'import sys; print("%.0f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$2"; }
# Runs one playbook into WORK/LOG.log; on failure shows its tail and stops the benchmark.
play() {
  local playbook=$1 log=$2
  shift 2
  ansible-playbook "${INV[@]}" "playbooks/$playbook" "$@" >"$WORK/$log.log" 2>&1 \
    || { tail -n 30 "$WORK/$log.log"; echo "bringup.sh: $playbook failed ($log)" >&2; exit 1; }
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
up=() rerun=() down=()
for run in $(seq "$RUNS"); do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  rm -rf "$WORK/secrets" "$WORK/nvml-simulator.json"
  t0=$(now)
  play site.yml "site-$run" "${SITE_VARS[@]}"
  out=$(ansible "${INV[@]}" hpc_controller -m ansible.builtin.command -a "timeout 300 srun -N2 hostname" 2>/dev/null)
  [ "$(echo "$out" | grep -c '^hpc-compute-0[12]$')" = 2 ] || { echo "$out"; echo "bringup.sh: srun -N2 hostname failed" >&2; exit 1; }
  t1=$(now)
  play site.yml "rerun-$run" "${SITE_VARS[@]}"
  t2=$(now)
  changed=$(recap_changed "$WORK/rerun-$run.log")
  [ "$changed" = 0 ] || { echo "bringup.sh: re-run reported changed=$changed (run $run)" >&2; exit 1; }
  play destroy.yml "destroy-$run"
  t3=$(now)
  up+=("$(secs "$t0" "$t1")") rerun+=("$(secs "$t1" "$t2")") down+=("$(secs "$t2" "$t3")")
  printf 'run %s (load %s): bring-up %ss, re-run %ss (changed=0), teardown %ss\n' \
    "$run" "$load" "${up[-1]}" "${rerun[-1]}" "${down[-1]}"
done
printf 'median of %s runs (strategy %s): bring-up %ss, re-run %ss, teardown %ss\n' "$RUNS" \
  "${ANSIBLE_STRATEGY:-$(sed -n 's/^strategy *= *//p' ansible.cfg)}" \
  "$(median "${up[@]}")" "$(median "${rerun[@]}")" "$(median "${down[@]}")"
