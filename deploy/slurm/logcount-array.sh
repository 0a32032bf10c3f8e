#!/usr/bin/env bash
# One task of a Slurm job array counting LOGS with herd: task I of N counts shard I of N
# (herd reads I from SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, N from the array size) and
# writes its partial to PARTS/part-I. Merge the partials once every task is done:
#
#   sbatch --array=0-3 --wait deploy/slurm/logcount-array.sh /shared/logs /shared/parts
#   supervisor merge /shared/parts
#
# With a plan file (inputs that may still grow), pass it as a third argument.
#SBATCH --job-name=herd-logcount
#SBATCH --cpus-per-task=1
#SBATCH --time=30
set -euo pipefail
logs=$1
parts=$2
plan=${3:-}
supervisor=${HERD_SUPERVISOR:-supervisor}
count=${SLURM_ARRAY_TASK_COUNT:?run this as a Slurm job array (sbatch --array=...)}
index=$((SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN))
mkdir -p "$parts"
if [ -n "$plan" ]; then
    exec "$supervisor" run logcount "$logs" --plan "$plan" --shard auto \
        --partial "$parts/part-$index" --workers "${SLURM_CPUS_PER_TASK:-1}"
fi
exec "$supervisor" run logcount "$logs" --shard "auto/$count" \
    --partial "$parts/part-$index" --workers "${SLURM_CPUS_PER_TASK:-1}"
