#!/usr/bin/env bash
# Records the Slurm collector's inputs from a live Slurm 22.05 (Debian 12) into tests/unit/data/monitoring/recorded/,
# so that the parser's unit tests read what Slurm really prints, not only hand-written samples.
#   bash tests/monitoring/record-slurm-samples.sh
# Runs Molecule's slurm scenario up to converge (one all-in-one container: slurmctld, slurmd with two simulated
# GPUs, slurmdbd), makes the states the collector reports (a running GPU job, an array with pending tasks, a job
# pending for resources, a drained node, a stopped slurmctld), runs the collector's commands (COMMANDS in
# roles/monitoring/files/hyperscaler_slurm_textfile.py) with LC_ALL=C, and destroys the scenario.
# Development only (not in make test): rerun after a Slurm upgrade and review the diff.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
rec_dir=$root/tests/unit/data/monitoring/recorded
ct=hpc-aio
# shellcheck source=tests/molecule/build-image.sh
source tests/molecule/build-image.sh hpc >/dev/null
export PATH=$root/.venv/bin:$PATH
trap 'molecule destroy -s slurm >/dev/null 2>&1 || true' EXIT
molecule converge -s slurm

in_ct() { podman exec "$ct" env LC_ALL=C "$@"; }
# The command lines are the collector's own.
record() {
  local file=$1; shift
  local rc=0
  in_ct "$@" >"$rec_dir/$file" 2>/dev/null || rc=$?
  echo "$file: $* (rc $rc, $(wc -l <"$rec_dir/$file") lines)"
}
mkdir -p "$rec_dir"
in_ct scontrol update nodename="$ct" state=resume >/dev/null 2>&1 || true
# A running job holding a GPU, an array whose tasks cannot all run on the node's CPUs, a job waiting for the
# whole node; then the node drained under them (MIXED+DRAIN, with a reason).
in_ct sbatch --parsable --job-name=train --partition=gpu --gres=gpu:1 --cpus-per-task=1 --mem=256 --wrap 'sleep 300'
in_ct sbatch --parsable --job-name=arr --partition=batch --array=0-5 --cpus-per-task=1 --mem=128 --wrap 'sleep 300'
in_ct sbatch --parsable --job-name='wait for it' --partition=batch --exclusive --wrap true
sleep 5
in_ct scontrol update nodename="$ct" state=drain reason="recorded drain"
for _ in $(seq 30); do in_ct squeue --noheader --states=R --format=%i | grep -q . && break; sleep 2; done
record scontrol-ping-up.txt scontrol ping
record scontrol-show-node.txt scontrol --oneliner show node
record sinfo-partitions.txt sinfo --noheader --format=%R
record squeue.txt squeue --noheader --array '--format=%i|%P|%T'
record scontrol-show-job.txt scontrol --oneliner show job
in_ct scancel --user=root
in_ct scontrol update nodename="$ct" state=resume
in_ct systemctl stop slurmctld
record scontrol-ping-down.txt scontrol ping
in_ct systemctl start slurmctld
in_ct scontrol --version >"$rec_dir/VERSION"
echo "recorded into $rec_dir ($(cat "$rec_dir/VERSION"))"
