#!/usr/bin/env bash
# logcount over a set of hosts with GNU parallel and ssh: plan once, one shard per job on the
# hosts listed in SSHLOGINFILE (one `[ncpus/]user@host` a line, GNU parallel's format), then
# merge the partials. LOGS and PARTS must be on storage every host sees at the same path (NFS,
# CephFS); `supervisor` must be on each host's PATH.
#
#   deploy/parallel/logcount.sh hosts.txt /nfs/logs /nfs/parts 8
#
# A shard whose host fails before publishing its partial is re-run (--retries 2) on another
# host; a retried shard that finds its partial already published exits 0 without counting.
set -euo pipefail
sshloginfile=$1
logs=$2
parts=$3
shards=${4:-8}
mkdir -p "$parts"
# The plan sits beside PARTS, not in it: `merge PARTS` takes every file there for a partial.
plan="${parts%/}.plan.json"
[ -e "$plan" ] || supervisor plan logcount "$logs" --shards "$shards" -o "$plan"
seq 0 $((shards - 1)) | parallel --sshloginfile "$sshloginfile" --retries 2 --halt now,fail=1 \
    supervisor run logcount --plan "$plan" --shard {} --partial "$parts/part-{}"
supervisor merge "$parts"
