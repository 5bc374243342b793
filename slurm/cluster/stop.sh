#!/usr/bin/env bash
# Stop only the daemons slurm/cluster/start.sh started, by their PID files.
#   slurm/cluster/stop.sh [STATE_DIR]      (default /tmp/mpifl-slurm)
set -uo pipefail
STATE=${1:-/tmp/mpifl-slurm}
for name in slurmd slurmctld munged; do
    pidfile="$STATE/$name.pid"
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 40); do
        # PID 1 may not reap orphans: a dead daemon can linger as a zombie, so read its state.
        state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
        case "$state" in ""|Z*|X*) break ;; esac
        sleep 0.25
    done
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    case "$state" in ""|Z*|X*) ;; *) kill -9 "$pid" 2>/dev/null ;; esac
    rm -f "$pidfile"
done
