# shellcheck shell=bash
# Sourced by tests/e2e/run.sh and benchmarks/bringup.sh: the VM end to end's cluster in a work dir.
#   e2e_cluster_files REPO WORK LAB
# writes WORK/id_ed25519{,.pub}, WORK/cluster.yml (config/minimal.yml renamed to LAB, lab mode on, pool
# and keys in WORK, one simulated H100 per compute node, partition debug max_time 00:30:00 and QoS short
# max_wall 10 for the limit checks; with HS_E2E_CONTAINERS=RUNTIME clusters.hpc.containers.runtime RUNTIME and
# 2 GiB nodes), WORK/e2e.cluster.yml (the inventory source) and
# WORK/gpu-vars.yml (the GPU role's files under WORK/sysroot); sets INV and SITE_VARS (arrays) for
# ansible-playbook, given IMAGE_NAME and IMAGE (the golden image's path).
e2e_cluster_files() {
  local repo=$1 work=$2 lab=$3
  [ -e "$work/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "hs-$lab" -f "$work/id_ed25519"
  "$repo/.venv/bin/python" - "$repo/config/minimal.yml" "$work" "$lab" <<'PY'
import os, sys, yaml
src, work, lab = sys.argv[1:]
data = yaml.safe_load(open(src))
data["metadata"]["name"] = lab
data["hypervisor"]["lab_mode"] = "enabled"
data["hypervisor"]["storage_pool"] = {"path": work + "/pool"}
data["ssh"] = {"public_key_file": work + "/id_ed25519.pub", "private_key_file": work + "/id_ed25519"}
# One simulated H100 per compute node: Slurm GRES, placeholder devices and GPU jobs without a GPU.
data["global"]["gpu_allocation"] = {
    "backend": "simulator", "simulator_state": work + "/nvml-simulator.json",
    "devices": [{"id": "GPU-%d" % i, "pci_address": "0000:%02x:00.0" % (0x18 + i),
                 "model": "NVIDIA H100 80GB HBM3"} for i in range(2)],
    "strategy": "whole", "whole_gpus": {"hpc": 2}}
data["clusters"]["hpc"]["compute_nodes"]["gpu_enabled"] = True
# Limits that hpc_verify.yml proves by jobs: debug's own MaxTime (under max_job_time) and a QoS MaxWall.
slurm = data["clusters"]["hpc"]["slurm_config"]
slurm["partitions"] = [p if p != "debug" else {"name": "debug", "max_time": "00:30:00"} for p in slurm["partitions"]]
slurm["qos"] = [{"name": "normal"}, {"name": "short", "priority": 10, "max_wall": "10"}]
# HS_E2E_CONTAINERS=charliecloud: the containers workflow too (registry, buildah image, ch-image pull, srun ch-run).
# The controller builds and pulls a torch image onto the shared disk, the compute nodes train in it (DDP, 2 GiB as
# config/mlops.yml's training nodes): more memory and disk than the minimal cluster's.
runtime = os.environ.get("HS_E2E_CONTAINERS", "")
if runtime:
    hpc = data["clusters"]["hpc"]
    hpc["containers"] = {"runtime": runtime}
    hpc["controller"].update(memory_gb=2, disk_gb=14)
    hpc["compute_nodes"].update(memory_gb=2)
yaml.safe_dump(data, open(work + "/cluster.yml", "w"), sort_keys=False)
PY
  printf 'plugin: aihow.hyperscaler.cluster\nconfig: cluster.yml\n' >"$work/e2e.cluster.yml"
  # The GPU role's files (simulated sysfs root, layout, device list, boot unit) stay in the work dir.
  mkdir -p "$work/sysroot"
  # shellcheck source=tests/lib/gpu-host-scratch-vars.sh
  . "$repo/tests/lib/gpu-host-scratch-vars.sh"
  gpu_host_scratch_vars "$work" /usr/bin/python3 >"$work/gpu-vars.yml"
  # shellcheck disable=SC2034  # used by the scripts that source this file
  INV=(-i "$work/e2e.cluster.yml")
  # The per-cluster secrets (MUNGE key, slurmdbd password) stay in the work dir too.
  # shellcheck disable=SC2034  # used by the scripts that source this file
  SITE_VARS=(-e "{\"vms_images\": {\"$IMAGE_NAME\": \"$IMAGE\"}}" -e "@$work/gpu-vars.yml"
             -e "munge_key_store_dir=$work/secrets" -e "slurm_secret_store_dir=$work/secrets")
}

# Sum of changed= over the PLAY RECAP of an ansible-playbook log.
recap_changed() {
  awk '/PLAY RECAP/{r=1} r && /changed=/{for(i=1;i<=NF;i++) if($i ~ /^changed=/){split($i,a,"="); s+=a[2]}} END{print s+0}' "$1"
}

# The MLOps end to end's cluster: config/mlops.yml (HPC controller + 2 compute, cloud control plane + 1
# worker) renamed to LAB, lab mode on, pool, keys and credentials in WORK.
#   e2e_mlops_cluster_files REPO WORK LAB
# writes WORK/id_ed25519{,.pub}, WORK/cluster.yml, WORK/e2e.cluster.yml; sets INV and SITE_VARS, given
# HPC_IMAGE and CLOUD_IMAGE (the golden images' paths).
e2e_mlops_cluster_files() {
  local repo=$1 work=$2 lab=$3
  [ -e "$work/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "hs-$lab" -f "$work/id_ed25519"
  "$repo/.venv/bin/python" - "$repo/config/mlops.yml" "$work" "$lab" <<'PY'
import sys, yaml
src, work, lab = sys.argv[1:]
data = yaml.safe_load(open(src))
data["metadata"]["name"] = lab
data["hypervisor"]["lab_mode"] = "enabled"
data["hypervisor"]["storage_pool"] = {"path": work + "/pool"}
data["ssh"] = {"public_key_file": work + "/id_ed25519.pub", "private_key_file": work + "/id_ed25519"}
data["mlops"]["credentials_dir"] = work + "/credentials"
yaml.safe_dump(data, open(work + "/cluster.yml", "w"), sort_keys=False)
PY
  printf 'plugin: aihow.hyperscaler.cluster\nconfig: cluster.yml\n' >"$work/e2e.cluster.yml"
  # shellcheck disable=SC2034  # used by the scripts that source this file
  INV=(-i "$work/e2e.cluster.yml")
  # shellcheck disable=SC2034  # used by the scripts that source this file
  SITE_VARS=(-e "{\"vms_images\": {\"hpc-base\": \"$HPC_IMAGE\", \"cloud-base\": \"$CLOUD_IMAGE\"}}"
             -e "munge_key_store_dir=$work/secrets" -e "slurm_secret_store_dir=$work/secrets")
}
