#!/usr/bin/env bash
# Set up scaling-suite on a fresh machine: a virtualenv in .venv with the package and its
# test tools, plus the Debian packages the real-SLURM tests need. Idempotent and quiet when
# everything is already there. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first, pinned to the machine's CPU wheel: an unpinned torch (asked for by deepspeed)
# would otherwise resolve to the newest CUDA build and download gigabytes.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
.venv/bin/pip install -q -e ".[test]"

# Slurm + munge for the real-SLURM tests (started and stopped by the tests themselves).
if [ -x .ci/slurm/install.sh ] || [ -f .ci/slurm/install.sh ]; then
  bash .ci/slurm/install.sh
fi
echo "setup: ok ($(.venv/bin/python -c 'import torch, deepspeed, transformers; print("torch", torch.__version__, "deepspeed", deepspeed.__version__, "transformers", transformers.__version__)' 2>/dev/null))"
