#!/usr/bin/env bash
# End-to-end test: config/minimal.yml's cluster (controller + 2 compute, 1 vCPU / 1 GiB each) as real
# QEMU VMs under a private libvirtd in a network namespace (lab mode), with one simulated H100 per
# compute node (gpu_allocation backend simulator, whole GPUs), driven by the playbooks:
#   site.yml (validate, host checks, images, GPU plan on the NVML simulator, lab up, VMs: boot, SSH +
#   host names, then the HPC cluster: MUNGE, NFS, Slurm with accounting and GRES, monitoring)
#   -> hpc_verify.yml (real jobs: munge across nodes, sinfo idle, srun -N2, sbatch to the shared FS,
#      --gres=gpu:1 gets CUDA_VISIBLE_DEVICES, an oversized GPU request refused, sacct, Prometheus,
#      an MPI allreduce across both compute nodes with srun --mpi=pmix)
#   -> site.yml again (changed=0)
#   -> destroy.yml -> nothing left (domain, network, pool, namespace, daemon, QEMU, overlay, seed ISO).
# Needs root, libvirtd + qemu-system-x86 + genisoimage/xorriso + netcat-openbsd, and the golden image
# from images/build.sh hpc-base (its cache: AIHOW_IMAGE_CACHE_DIR, default /var/cache/aihow-hyperscaler/images).
# HS_E2E_IMAGE=/path/x.qcow2 uses another image instead (development only).
# The lab is named "e2e" (metadata.name), not "lab", so a running test never changes what the
# inventory golden tests of config/minimal.yml see.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
export PATH="$REPO/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$REPO/.build/collections"
export ANSIBLE_CONFIG="$REPO/ansible.cfg"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
LAB=e2e
LAB_SCRIPT=$REPO/scripts/hyperscaler-lab
# The lab's network namespace, as the lab script names it (not spelled here).
NETNS=$("$LAB_SCRIPT" netns "$LAB")
IMAGE_NAME=hpc-base
T0=$(date +%s)
PHASES=()

say() { printf '\n=== e2e: %s\n' "$*"; }
fail() { echo "e2e FAILED: $*" >&2; exit 1; }
phase_start() { PHASE=$1; PHASE_T=$(date +%s); say "$PHASE"; }
phase_end() { local d=$(( $(date +%s) - PHASE_T )); PHASES+=("$(printf '%-62s %5ss' "$PHASE" "$d")"); }
report() {
  echo; echo "=== e2e timings"
  local p; for p in "${PHASES[@]}"; do echo "  $p"; done
  echo "  $(printf '%-62s %5ss' total $(( $(date +%s) - T0 )))"
}

[ "$(id -u)" = 0 ] || fail "must run as root (network namespace, libvirtd)"
for tool in ip libvirtd virtlogd qemu-system-x86_64 qemu-img nc ansible-playbook ssh-keygen; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install iproute2 libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils netcat-openbsd genisoimage dnsmasq-base; make deps)"
done
command -v genisoimage >/dev/null || command -v xorriso >/dev/null || fail "genisoimage or xorriso is needed for seed ISOs"
"$REPO/.venv/bin/python" -c 'import libvirt' 2>/dev/null || fail "libvirt-python is missing in .venv (pip install -r requirements-libvirt.txt)"
if "$LAB_SCRIPT" mode "$LAB" auto | grep -q '^disabled'; then
  fail "another libvirtd serves /run/libvirt/libvirt-sock; the e2e test needs its own lab (stop that libvirtd)"
fi

WORK=$(mktemp -d /var/tmp/hs-e2e.XXXXXX)
cleanup() {
  local rc=$?
  if [ $rc != 0 ]; then
    echo "--- last console lines of the guests" >&2
    tail -n 15 /var/log/libvirt/qemu/$LAB-*-console.log 2>/dev/null >&2 || true
  fi
  # Whatever happened: no daemon, guest or namespace outlives the test.
  "$LAB_SCRIPT" down "$LAB" >/dev/null 2>&1 || true
  # The lab's own /etc/libvirt (kept by down on purpose) belongs to this test only.
  rm -rf "$WORK" "/var/lib/aihow-hyperscaler/lab/$LAB"
  report
  exit $rc
}
trap cleanup EXIT

phase_start "golden image"
if [ -n "${HS_E2E_IMAGE:-}" ]; then
  IMAGE=$HS_E2E_IMAGE
  echo "NOTE: HS_E2E_IMAGE=$IMAGE is used instead of images/build.sh $IMAGE_NAME (development override)"
elif [ -x images/build.sh ]; then
  # Cached by content: a no-op when the image is current. Its last stdout line is JSON with the path.
  build_json=$(images/build.sh "$IMAGE_NAME" | tail -n 1)
  IMAGE=$("$REPO/.venv/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])["image"])' "$build_json") \
    || fail "images/build.sh $IMAGE_NAME printed no JSON result line: $build_json"
else
  fail "images/build.sh does not exist (the golden image builder); set HS_E2E_IMAGE=/path/to/$IMAGE_NAME.qcow2 to test with another image"
fi
[ -f "$IMAGE" ] || fail "golden image $IMAGE does not exist"
IMAGE=$(readlink -f "$IMAGE")
IMAGE_SUM_BEFORE=$(stat -c '%s %Y' "$IMAGE")
phase_end

phase_start "work dir, key, cluster.yaml"
# shellcheck source=tests/lib/e2e-cluster.sh
. "$REPO/tests/lib/e2e-cluster.sh"
e2e_cluster_files "$REPO" "$WORK" "$LAB"
phase_end

phase_start "site.yml: validate, host, images, GPU, lab, VMs, HPC cluster"
ansible-playbook "${INV[@]}" playbooks/site.yml "${SITE_VARS[@]}" | tee "$WORK/site1.log"
"$LAB_SCRIPT" status "$LAB" || fail "lab $LAB is not up after site.yml"
ip netns list | grep -q "^$NETNS\b" || fail "no netns $NETNS"
DAEMON_PIDS="$(cat /run/aihow-hyperscaler/$LAB/libvirtd.pid) $(cat /run/aihow-hyperscaler/$LAB/virtlogd.pid)"
# The VMs are reached through the namespace: the inventory must say so.
ansible-inventory "${INV[@]}" --host hpc-compute-01 | grep -q "ip netns exec $NETNS nc" \
  || fail "the inventory gives hpc-compute-01 no ProxyCommand through netns $NETNS"
grep -q 'hpc-controller *: ok=' "$WORK/site1.log" || fail "hpc-controller was not reached"
for h in hpc-controller hpc-compute-01 hpc-compute-02; do
  grep -Eq "^$h +: ok=[1-9].* failed=0" "$WORK/site1.log" || fail "$h did not pass the SSH/host name checks"
done
QEMU_PIDS=$(ip netns pids "$NETNS" | xargs)
# The README promises that the main command ends by saying how to log in and submit a job.
grep -q "Log in:         ip netns exec $NETNS ssh -i $WORK/id_ed25519 hyperscaler@192.168.100.10" "$WORK/site1.log" \
  || fail "site.yml did not print how to log in to the controller"
grep -q "Run a job:      srun -N2 hostname" "$WORK/site1.log" || fail "site.yml did not print how to submit a job"
phase_end

# Benchmark point (docs/benchmarks.md): from nothing to a cluster that answers srun -N2 hostname.
phase_start "first srun -N2 hostname"
rc=0; out=$(ansible "${INV[@]}" hpc_controller -m ansible.builtin.command -a "timeout 300 srun -N2 hostname") || rc=$?
echo "$out"
[ "$rc" = 0 ] || fail "srun -N2 hostname through ad-hoc Ansible exited $rc"
[ "$(echo "$out" | grep -c '^hpc-compute-0[12]$')" = 2 ] || fail "srun -N2 hostname did not answer from both compute nodes"
phase_end

phase_start "hpc_verify.yml: real jobs on the Slurm cluster"
ansible-playbook "${INV[@]}" playbooks/hpc_verify.yml | tee "$WORK/verify.log"
for h in hpc-controller hpc-compute-01 hpc-compute-02; do
  grep -Eq "^$h +: ok=[1-9].* failed=0" "$WORK/verify.log" || fail "hpc_verify.yml did not pass on $h"
done
# Every check ran (none skipped for lack of GPUs or monitoring).
for t in "One task on every compute node" "The file names the compute node that ran the job" \
         "A job asking for one GPU gets its device in CUDA_VISIBLE_DEVICES" \
         "A job asking for more GPUs than any node has is refused" "Accounting lists the jobs" \
         "Every node target is up" "Both ranks report the right sum from two different nodes"; do
  grep -A3 "TASK \[$t\]" "$WORK/verify.log" | grep -q '^ok: \[hpc-controller' || fail "hpc_verify.yml: '$t' did not run and pass"
done
phase_end

phase_start "hostnames through ad-hoc Ansible"
# Printed whatever the exit status (an unreachable host must show which one).
rc=0; out=$(ansible "${INV[@]}" hpc -m ansible.builtin.command -a hostname) || rc=$?
echo "$out"
[ "$rc" = 0 ] || fail "ad-hoc hostname on the hpc group exited $rc"
for h in hpc-controller hpc-compute-01 hpc-compute-02; do
  echo "$out" | grep -A1 -E "^$h \| CHANGED \| rc=0 >>\$" | tail -n 1 | grep -qx "$h" \
    || fail "$h did not answer with its name"
done
phase_end

phase_start "site.yml again (idempotent)"
ansible-playbook "${INV[@]}" playbooks/site.yml "${SITE_VARS[@]}" | tee "$WORK/site2.log"
changed=$(recap_changed "$WORK/site2.log")
[ "$changed" = 0 ] || fail "second site.yml run reported changed=$changed (expected 0)"
phase_end

phase_start "destroy (destroy.yml)"
ansible-playbook "${INV[@]}" playbooks/destroy.yml | tee "$WORK/destroy.log"
phase_end

phase_start "nothing left"
ETC=/var/lib/aihow-hyperscaler/lab/$LAB/etc-libvirt
left=$(ls "$ETC"/qemu/*.xml "$ETC"/qemu/networks/*.xml "$ETC"/storage/*.xml 2>/dev/null || true)
[ -z "$left" ] || fail "libvirt definitions left: $left"
! ip netns list | grep -q "^$NETNS\b" || fail "netns $NETNS is still there"
for pid in $DAEMON_PIDS $QEMU_PIDS; do
  ! kill -0 "$pid" 2>/dev/null || fail "process $pid ($(ps -o comm= -p "$pid")) is still running"
done
! pgrep -f "guest=$LAB-hpc-" >/dev/null || fail "a QEMU process of the lab is still running"
[ ! -e "/run/aihow-hyperscaler/$LAB" ] || fail "lab state /run/aihow-hyperscaler/$LAB is still there"
leftover=$(find "$WORK/pool" -name "$LAB-*" 2>/dev/null)
[ -z "$leftover" ] || fail "overlays or seed ISOs left: $leftover"
[ "$(stat -c '%s %Y' "$IMAGE")" = "$IMAGE_SUM_BEFORE" ] || fail "the golden image $IMAGE was modified"
echo "no domain, network, pool, namespace, daemon, QEMU process, overlay or seed ISO left; golden image intact"
phase_end

say "PASSED"
