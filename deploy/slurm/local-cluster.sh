#!/usr/bin/env bash
# A single-node Slurm cluster on this host, for trying and testing herd's shard runs:
# installs slurm-wlm and munge (Debian/Ubuntu, as root), creates a munge key, writes
# /etc/slurm/slurm.conf for this host (proctrack/linuxproc, task/none: no cgroups needed,
# so it also runs in containers), starts munged, slurmctld and slurmd, and waits until the
# node takes jobs. Idempotent: a second run finds everything in place and only checks it.
#
#   sudo deploy/slurm/local-cluster.sh
#   sbatch --array=0-3 --wait deploy/slurm/logcount-array.sh /data/logs /data/parts
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "local-cluster.sh: run as root (it installs packages and starts daemons)" >&2
    exit 2
fi

log() { echo "local-cluster.sh: $*" >&2; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: one key, readable by the munge user only.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating the munge key"
    mungekey --create --keyfile=/etc/munge/munge.key --force
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
memory=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=$(
    cat <<EOF
# Written by herd's deploy/slurm/local-cluster.sh: one node, this host.
ClusterName=herd
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=herd Nodes=${host} Default=YES MaxTime=60 State=UP
EOF
)
changed=no
if [ ! -f /etc/slurm/slurm.conf ] || [ "$(cat /etc/slurm/slurm.conf)" != "$conf" ]; then
    log "writing /etc/slurm/slurm.conf"
    printf '%s\n' "$conf" >/etc/slurm/slurm.conf
    changed=yes
fi

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if running /run/slurmctld.pid && [ "$changed" = yes ]; then
    log "reconfiguring the running slurmctld"
    scontrol reconfigure
fi
if ! running /run/slurmctld.pid; then
    log "starting slurmctld"
    /usr/sbin/slurmctld
fi
for _ in $(seq 100); do
    scontrol ping 2>/dev/null | grep -q UP && break
    sleep 0.2
done
scontrol ping | grep -q UP || { log "slurmctld did not come up; see /var/log/slurm/slurmctld.log"; exit 1; }
if ! running /run/slurmd.pid; then
    log "starting slurmd"
    /usr/sbin/slurmd
fi

# Wait for the node to report, and bring it back if an earlier run left it down.
for _ in $(seq 150); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -n1)
    case "$state" in
        idle* | mix* | alloc*) break ;;
        down* | drain* | fail*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
done
state=$(sinfo -h -n "$host" -o %t | head -n1)
case "$state" in
    idle* | mix* | alloc*) log "node $host is $state: the cluster takes jobs" ;;
    *) log "node $host is ${state:-unknown}; see /var/log/slurm/slurmd.log"; exit 1 ;;
esac
