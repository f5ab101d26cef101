#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py), writing results/gpu_check.json. On a GPU machine whose python3 already holds
# torch (with nothing to download there), that python3 runs it on the checkout's sources; elsewhere the project's
# .venv is set up first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] && python3 -c "import torch" 2>/dev/null; then
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  # wheels carried beside the checkout (.whl/, e.g. pycocotools for the COCO tests: such a machine has no index)
  if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/kdforge-site .whl/*.whl
    export PYTHONPATH="/tmp/kdforge-site:$PYTHONPATH"
  fi
  exec python3 bench/gpu_check.py "$@"
fi
make -s setup
exec .venv/bin/python bench/gpu_check.py "$@"
