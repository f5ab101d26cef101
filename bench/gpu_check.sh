#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py), writing results/gpu_check.json. On a GPU machine whose python3 already holds
# torch (with nothing to download there), that python3 runs it on the checkout's sources; elsewhere the project's
# .venv is set up first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] && python3 -c "import torch" 2>/dev/null; then
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  exec python3 bench/gpu_check.py "$@"
fi
make -s setup
exec .venv/bin/python bench/gpu_check.py "$@"
