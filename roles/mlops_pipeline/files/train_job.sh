#!/usr/bin/env bash
# The training job's batch script (sbatch gives the job's size, time, output and partition on its command
# line; playbooks/mlops_train.yml through the mlops_pipeline role). One task per node: srun starts a
# PyTorch DDP rank on each, rank 0 logs to MLflow (MLFLOW_TRACKING_URI from the job's environment).
#   sbatch ... train_job.sh VENV PROGRAM ARGS...
set -euo pipefail
venv=$1 program=$2
shift 2
# One thread per rank: one vCPU per node, and gloo runs its own communication thread.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec srun --kill-on-bad-exit=1 "$venv/bin/python" "$program" "$@"
