#!/usr/bin/env bash
# End-to-end test: config/minimal.yml's cluster (controller + 2 compute, 1 vCPU / 1 GiB each) as real
# QEMU VMs under a private libvirtd in a network namespace (lab mode), with one simulated H100 per
# compute node (gpu_allocation backend simulator, whole GPUs), driven by the playbooks:
#   site.yml (validate, host checks, images, GPU plan on the NVML simulator, lab up, VMs: boot, SSH +
#   host names, then the HPC cluster: MUNGE, NFS, Slurm with accounting and GRES, monitoring)
#   -> hpc_verify.yml (real jobs: munge across nodes, sinfo idle, srun -N2, sbatch to the shared FS,
#      --gres=gpu:1 gets CUDA_VISIBLE_DEVICES, an oversized GPU request refused, sacct, Prometheus,
#      an MPI allreduce across both compute nodes with srun --mpi=pmix; the containers play is skipped:
#      clusters.hpc.containers.runtime is none by default and this cluster leaves it so, docs/containers.md)
#   -> site.yml again (changed=0)
#   -> destroy.yml -> nothing left (domain, network, pool, namespace, daemon, QEMU, overlay, seed ISO).
# Needs root, libvirtd + qemu-system-x86 + genisoimage/xorriso + netcat-openbsd, and the golden image
# from images/build.sh hpc-base (its cache: AIHOW_IMAGE_CACHE_DIR, default /var/cache/aihow-hyperscaler/images).
# HS_E2E_IMAGE=/path/x.qcow2 uses another image instead (development only).
# HS_E2E_CONTAINERS=charliecloud turns the containers workflow on (2 GiB nodes) and requires its jobs in hpc_verify.yml:
# not part of `make test` (it adds the image build, push, pull and a training in the image under TCG: docs/containers.md).
# The lab is named "e2e" (metadata.name), not "lab", so a running test never changes what the
# inventory golden tests of config/minimal.yml see.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/e2e-harness.sh
. tests/lib/e2e-harness.sh
e2e_init e2e e2e
IMAGE_NAME=hpc-base
e2e_require_lab
e2e_make_workdir

phase_start "golden image"
e2e_image "$IMAGE_NAME" IMAGE "${HS_E2E_IMAGE:-}"
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
e2e_record_lab_pids
# The VMs are reached through the namespace: the inventory must say so.
ansible-inventory "${INV[@]}" --host hpc-compute-01 | grep -q "ip netns exec $NETNS nc" \
  || fail "the inventory gives hpc-compute-01 no ProxyCommand through netns $NETNS"
grep -q 'hpc-controller *: ok=' "$WORK/site1.log" || fail "hpc-controller was not reached"
for h in hpc-controller hpc-compute-01 hpc-compute-02; do
  grep -Eq "^$h +: ok=[1-9].* failed=0" "$WORK/site1.log" || fail "$h did not pass the SSH/host name checks"
done
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
# Every check ran (none skipped for lack of GPUs or monitoring); with HS_E2E_CONTAINERS (tests/lib/e2e-cluster.sh)
# the container jobs too.
required=("One task on every compute node" "The file names the compute node that ran the job"
          "A job asking for one GPU gets its device in CUDA_VISIBLE_DEVICES"
          "A job asking for more GPUs than any node has is refused" "Accounting lists the jobs"
          "Every node target is up" "Both ranks report the right sum from two different nodes")
if [ -n "${HS_E2E_CONTAINERS:-}" ]; then
  required+=("The image on the shared filesystem is the registry's" "Both ranks ran inside the image on two different nodes"
             "Both ranks trained one model that reaches the accuracy gate")
fi
for t in "${required[@]}"; do
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
e2e_nothing_left
phase_end

say "PASSED"
