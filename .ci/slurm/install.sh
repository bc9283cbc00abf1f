#!/usr/bin/env bash
# Install Debian's Slurm (slurmctld + slurmd + client tools) and munge for the
# single-node test cluster. Idempotent: returns in well under a second when the
# binaries are already there, so CI and the pytest fixture can call it unconditionally.
set -euo pipefail

# sinfo --version needs a slurm.conf; ask dpkg instead.
version() { dpkg-query -W -f='${Package} ${Version}  ' slurm-wlm munge 2>/dev/null || true; }

needed=(sinfo sbatch srun squeue scontrol slurmctld slurmd munged)
missing=()
for binary in "${needed[@]}"; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "slurm/install: already installed ($(version))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm/install: missing ${missing[*]}; installing needs root (run as root or with sudo)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
apt-get update -qq
# slurm-wlm pulls slurmctld, slurmd and slurm-client; the daemons' postinst tries to start
# services through systemd, which is absent in containers: policy-rc.d (exit 101) tells
# invoke-rc.d not to start anything, start.sh starts the daemons itself.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap 'if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
    || apt-get install -y --no-install-recommends slurm-wlm munge
echo "slurm/install: installed $(dpkg-query -W -f='slurm-wlm ${Version}' slurm-wlm), $(dpkg-query -W -f='munge ${Version}' munge) in $(($(date +%s) - start)) s"
