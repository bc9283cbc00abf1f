#!/usr/bin/env bash
# The first-GPU check (README.md, "On a GPU machine"): pythia-160m and pythia-1b at their
# real shapes, 30 updates each in bf16 and fp16, flash-attention where it loads, TP=1 and
# (with 2+ GPUs) TP=2, through the real `suite train`. Writes benchmarks/results/gpu.json
# after every run and prints a summary to paste into a note. The same command on 1 or 8 GPUs.
#
#   bash benchmarks/gpu_check.sh --dry-run          # here, without a GPU: commands + configs
#   bash benchmarks/gpu_check.sh                    # on the GPU machine
#   bash benchmarks/gpu_check.sh --wheels .whl      # install carried wheels first (offline)
#
# Other arguments go to benchmarks/gpu_check.py (--help). Environment: PYTHON (default
# .venv/bin/python, else python3), GPU_CHECK_BUDGET_S (seconds for all runs, default 480).
# Exit codes: 0 passed (or dry run OK), 1 an assertion failed, 2 no GPU / bad usage,
# 3 incomplete (the budget left runs out), 124 the total time guard stopped the check.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ -n "${PYTHON:-}" ]]; then
  python="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
  python=.venv/bin/python
else
  python=python3   # the GPU machines' image: python3 holds the CUDA torch
fi

args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels)
      # No registry on the GPU machine: the packages its image lacks (deepspeed, hydra-core,
      # flash-attn, ...) travel as wheels and go into a private target, on PYTHONPATH.
      [[ $# -ge 2 ]] || { echo "gpu_check.sh: --wheels needs a folder" >&2; exit 2; }
      site="${TMPDIR:-/tmp}/gpu_check_site"
      "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$site" "$2"/*.whl
      export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
      shift 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done

# The repository need not be installed: its packages import from here.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
budget="${GPU_CHECK_BUDGET_S:-480}"

# The driver stops starting runs when its budget is spent; `timeout` is the hard guard
# above it (60 s for the run in flight to be stopped and the results written).
status=0
timeout --signal=TERM --kill-after=30 "$((budget + 60))" \
  "$python" -u benchmarks/gpu_check.py --budget-s "$budget" ${args[@]+"${args[@]}"} || status=$?

if [[ $status -eq 124 || $status -eq 137 ]]; then
  echo "gpu_check.sh: the total time guard ($((budget + 60)) s) stopped the check; partial results:" >&2
  "$python" benchmarks/gpu_check.py --summary ${args[@]+"${args[@]}"} || true
  exit 124
fi
exit "$status"
