#!/usr/bin/env bash
# Set up scaling-suite on a fresh machine: a virtualenv in .venv with the package; with
# --test also its test tools and the Debian packages the tests need (Slurm + munge for the
# real-SLURM tests, Chromium for the HTML report test). Idempotent and quiet when everything
# is already there. Usage: bash scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --test) TEST=1 ;;
  "") TEST=0 ;;
  *) echo "setup: unknown option ${1}; use no option (run the suite) or --test (run the tests)" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first, pinned to the machine's CPU wheel: an unpinned torch (asked for by deepspeed)
# would otherwise resolve to the newest CUDA build and download gigabytes.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
if [ "$TEST" -eq 0 ]; then
  .venv/bin/pip install -q -e .
else
  .venv/bin/pip install -q -e ".[test]"
fi

if [ "$TEST" -eq 1 ]; then
  # Slurm + munge for the real-SLURM tests (started and stopped by the tests themselves).
  if [ -x .ci/slurm/install.sh ] || [ -f .ci/slurm/install.sh ]; then
    bash .ci/slurm/install.sh
  fi
  # Debian's Chromium for the report test (tests/test_report_html.py opens report.html headless
  # through Playwright, which uses this binary: no browser download).
  if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    # Headless needs none of the recommends (GPU drivers, desktop services); the fonts it uses.
    { apt-get update -qq \
      && apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; } \
      || echo "setup: could not install chromium; tests/test_report_html.py will skip" >&2
  fi
fi
echo "setup: ok ($(.venv/bin/python -c 'import torch, deepspeed, transformers; print("torch", torch.__version__, "deepspeed", deepspeed.__version__, "transformers", transformers.__version__)' 2>/dev/null))"
