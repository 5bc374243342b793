#!/usr/bin/env bash
# Start a single-node Slurm on this machine, for mpifl's integration tests.
#   slurm/cluster/start.sh [STATE_DIR]      (default /tmp/mpifl-slurm)
# Installs Debian's slurmctld, slurmd, slurm-client and munge if missing, writes
# STATE_DIR/slurm.conf and starts munged, slurmctld and slurmd by hand (no
# systemd), each with a PID file that slurm/cluster/stop.sh uses.  Prints the
# line to export SLURM_CONF.  Needs root.
set -euo pipefail
STATE=${1:-/tmp/mpifl-slurm}
HOST=$(hostname -s)
CPUS=${MPIFL_SLURM_CPUS:-8}   # declared CPUs: lets a 2-core node take an 8-task job
# Job ids that no earlier test cluster on this machine used: MPICH names its shared-memory segment after the
# job and step, and a segment left by a killed rank of an earlier cluster's job 1 would be taken for this one's.
FIRST_JOB_ID=${MPIFL_SLURM_FIRST_JOB_ID:-$(( $(date +%s) % 50000000 + 1000 ))}

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$STATE"/{ctld,spool,munge} /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge "$STATE/munge" 2>/dev/null || true
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }

cat > "$STATE/slurm.conf" <<CONF
ClusterName=mpifl
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmi2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=5
KillWait=10
JobRequeue=1
FirstJobId=$FIRST_JOB_ID
NodeName=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$STATE/slurm.conf"

alive() { [ -s "$1" ] && grep -qvE '^(Z|X)' <(ps -o stat= -p "$(cat "$1")" 2>/dev/null || echo X); }

alive "$STATE/munged.pid" || { munged --force --pid-file="$STATE/munged.pid" --socket=/run/munge/munge.socket.2 --log-file="$STATE/munged.log" 2>/dev/null || munged --force; sleep 0.5; [ -s "$STATE/munged.pid" ] || pgrep -n munged > "$STATE/munged.pid"; }
alive "$STATE/slurmctld.pid" || slurmctld -f "$SLURM_CONF"
alive "$STATE/slurmd.pid" || slurmd -f "$SLURM_CONF"

for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.5
done
echo "slurm/cluster/start.sh: the node did not become idle; see $STATE/*.log" >&2
sinfo >&2 || true
exit 1
