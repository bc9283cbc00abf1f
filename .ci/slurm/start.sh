#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine for the tests:
#   .ci/slurm/start.sh STATE_DIR
# Writes slurm.conf (from slurm.conf.in) to $SLURM_CI_CONF (default /etc/slurm/slurm.conf, the
# path Debian's clients read), starts munged (unless one already answers), slurmctld and slurmd
# as root, records the pids it started in STATE_DIR/started.pids ("name pid" per line) and
# waits until the node is idle. stop.sh STATE_DIR stops exactly those pids.
# On failure it prints the daemon logs, stops what it started and exits non-zero.
#
# Settings (environment):
#   SLURM_CI_CONF            slurm.conf path (default /etc/slurm/slurm.conf; clients need
#                            SLURM_CONF=<path> when it is not the default)
#   SLURM_CI_OVERSUBSCRIBE   jobs allowed to share a CPU (default 2)
#   SLURM_CI_REAL_MEMORY_MB  memory declared for the node (default: half of MemTotal)
#   SLURM_CI_CTLD_PORT / SLURM_CI_SLURMD_PORT   (default 6817 / 6818)
#   SLURM_CI_START_TIMEOUT   seconds to wait for the node to be idle (default 60)
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 STATE_DIR   (a directory for the cluster's state, logs and pids)" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm/start: must run as root (the test cluster runs slurmd as root)" >&2
    exit 1
fi
for binary in slurmctld slurmd munged sinfo scontrol; do
    if ! command -v "$binary" >/dev/null 2>&1; then
        echo "slurm/start: $binary not found; run .ci/slurm/install.sh first" >&2
        exit 1
    fi
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
state_dir=$(cd "$1" && pwd)
conf=${SLURM_CI_CONF:-/etc/slurm/slurm.conf}
marker="scaling-suite test cluster"
oversubscribe=${SLURM_CI_OVERSUBSCRIBE:-2}
ctld_port=${SLURM_CI_CTLD_PORT:-6817}
slurmd_port=${SLURM_CI_SLURMD_PORT:-6818}
timeout_s=${SLURM_CI_START_TIMEOUT:-60}
node=$(hostname -s)
cpus=$(nproc)
mem_total_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
real_memory_mb=${SLURM_CI_REAL_MEMORY_MB:-$((mem_total_mb / 2))}
pids_file="$state_dir/started.pids"
export SLURM_CONF="$conf"

started_at=$(date +%s.%N)

# Refuse to start twice from one STATE_DIR: the first cluster's pids would be lost.
if [ -s "$pids_file" ]; then
    while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm/start: $name (pid $pid) from $pids_file is still running; run .ci/slurm/stop.sh $state_dir first" >&2
            exit 1
        fi
    done <"$pids_file"
fi
: >"$pids_file"

# Never overwrite a site's own slurm.conf: only one that this script wrote.
if [ -e "$conf" ] && ! grep -q "$marker" "$conf"; then
    echo "slurm/start: $conf exists and was not written by this script; set SLURM_CI_CONF to another path (and SLURM_CONF for clients) or move it away" >&2
    exit 1
fi

mkdir -p "$state_dir"/{slurmctld,slurmd,run,log,munge}
rm -f "$state_dir"/run/*.pid

print_logs() {
    for log in "$state_dir"/log/*.log; do
        [ -e "$log" ] || continue
        echo "----- $log (last 40 lines) -----" >&2
        tail -n 40 "$log" >&2
    done
}
on_error() {
    echo "slurm/start: failed; daemon logs follow, then the daemons started here are stopped" >&2
    print_logs
    "$here/stop.sh" "$state_dir" >&2 || true
}
trap on_error ERR

# Render the config to a temp name next to the target and rename it into place, so a reader
# never sees half a file.
mkdir -p "$(dirname "$conf")"
tmp_conf=$(mktemp "$conf.XXXXXX")
sed -e "s|@MARKER@|$marker|g" \
    -e "s|@STATE_DIR@|$state_dir|g" \
    -e "s|@NODE@|$node|g" \
    -e "s|@CPUS@|$cpus|g" \
    -e "s|@REAL_MEMORY_MB@|$real_memory_mb|g" \
    -e "s|@OVERSUBSCRIBE@|$oversubscribe|g" \
    -e "s|@CTLD_PORT@|$ctld_port|g" \
    -e "s|@SLURMD_PORT@|$slurmd_port|g" \
    "$here/slurm.conf.in" >"$tmp_conf"
chmod 644 "$tmp_conf"
sync "$tmp_conf"
mv -f "$tmp_conf" "$conf"
cp "$conf" "$state_dir/slurm.conf"

# Wait (bounded) for a daemon's pid file, then record the pid as started by us.
record_pid() {
    local name=$1 pid_file=$2 waited=0
    while [ ! -s "$pid_file" ]; do
        if [ "$waited" -ge 100 ]; then
            echo "slurm/start: $name did not write $pid_file within 10 s" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    local pid
    pid=$(tr -d '[:space:]' <"$pid_file")
    kill -0 "$pid"
    echo "$name $pid" >>"$pids_file"
}

munge_answers() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

# munge: Debian's socket /run/munge/munge.socket.2 and key /etc/munge/munge.key (the postinst
# creates the key; a minimal image may not have run it). A munged already serving the socket
# (e.g. the system's) is reused and not recorded, so stop.sh leaves it alone.
if munge_answers; then
    echo "slurm/start: reusing the munged already answering on /run/munge"
else
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 600 /etc/munge/munge.key
    fi
    mkdir -p /run/munge
    chmod 755 /run/munge
    munged --force \
        --pid-file="$state_dir/run/munged.pid" \
        --log-file="$state_dir/log/munged.log" \
        --seed-file="$state_dir/munge/munged.seed"
    record_pid munged "$state_dir/run/munged.pid"
    for _ in $(seq 50); do munge_answers && break; sleep 0.1; done
    munge_answers || { echo "slurm/start: munged started but does not answer" >&2; false; }
fi

slurmctld -f "$conf"
record_pid slurmctld "$state_dir/run/slurmctld.pid"
slurmd -f "$conf"
record_pid slurmd "$state_dir/run/slurmd.pid"

deadline=$(($(date +%s) + timeout_s))
node_state=""
while :; do
    node_state=$(sinfo -h -n "$node" -o %T 2>/dev/null | head -1 || true)
    [ "$node_state" = "idle" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "slurm/start: node $node is '${node_state:-not answering}' after ${timeout_s} s, expected 'idle'" >&2
        scontrol show node "$node" >&2 2>&1 || true
        false
    fi
    sleep 0.2
done
trap - ERR

elapsed=$(awk -v a="$started_at" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
echo "slurm/start: node $node idle ($cpus CPUs, ${real_memory_mb} MB, oversubscribe $oversubscribe) in ${elapsed} s; conf $conf; pids: $(tr '\n' ' ' <"$pids_file")"
