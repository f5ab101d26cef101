#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): sets up .venv if needed, then writes results/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s setup
exec .venv/bin/python bench/gpu_check.py "$@"
