#!/usr/bin/env bash
# Stop the Slurm test cluster started by start.sh STATE_DIR: exactly the pids recorded in
# STATE_DIR/started.pids, nothing found by name. Each pid is checked against the recorded
# program name first (a pid reused by another program after a crash is left alone).
#   .ci/slurm/stop.sh STATE_DIR
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 STATE_DIR   (the directory given to start.sh)" >&2
    exit 2
fi
pids_file="$1/started.pids"
if [ ! -e "$pids_file" ]; then
    echo "slurm/stop: $pids_file not found; nothing to stop"
    exit 0
fi

# Alive and not a zombie (an exited child whose parent has not reaped it yet).
running() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || echo X)
    [ "$state" != "Z" ] && [ "$state" != "X" ]
}

# Each daemon takes ~2 s to exit after SIGTERM: signal them all, then wait for all.
names=()
pids=()
while read -r name pid; do
    [ -n "${pid:-}" ] || continue
    if ! running "$pid"; then
        echo "slurm/stop: $name (pid $pid) already gone"
        continue
    fi
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    # /proc/PID/comm holds at most 15 characters; compare on that prefix.
    if [ "$comm" != "${name:0:15}" ]; then
        echo "slurm/stop: pid $pid is now '$comm', not $name; leaving it alone" >&2
        continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    names+=("$name")
    pids+=("$pid")
done < <(tac "$pids_file")

for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    for _ in $(seq 100); do
        running "$pid" || break
        sleep 0.1
    done
    if running "$pid"; then
        echo "slurm/stop: ${names[$i]} (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "slurm/stop: stopped ${names[$i]} (pid $pid)"
done
: >"$pids_file"
