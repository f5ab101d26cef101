#!/usr/bin/env bash
# The CPU preset's three reference runs on CIFAR-10 (JPEG): teacher resnet20 (30 epochs), then student
# resnet8 (15 epochs) with `ce` and with `kd` from that teacher. Resumable: a finished run (summary.json)
# is skipped and an interrupted one continues from its last checkpoint. Prints the three figures at the end.
#   bash bench/cifar10_cpu_preset.sh            # OUT=runs/cifar10-cpu THREADS=2 by default
set -euo pipefail
cd "$(dirname "$0")/.."
KDFORGE=${KDFORGE:-.venv/bin/kdforge}
OUT=${OUT:-runs/cifar10-cpu}
THREADS=${THREADS:-2}

run() {
  local name=$1; shift
  if [ -f "$OUT/$name/summary.json" ]; then echo "$name: done already"; return; fi
  local resume=()
  if [ -f "$OUT/$name/checkpoint.pt" ] || [ -f "$OUT/$name/checkpoint.prev.pt" ]; then resume=(--resume); fi
  "$KDFORGE" train "$@" out="$OUT/$name" threads="$THREADS" checkpoint_every=40 "${resume[@]}"
}

run teacher cifar10-cpu-teacher
run student-ce cifar10-cpu-student method=ce
run student-kd cifar10-cpu-student method=kd teacher_checkpoint="$OUT/teacher"

.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'run':<12} {'model':<9} {'method':<6} {'top1 last':>9} {'top1 best':>9} {'wall s':>8} {'img/s':>7}")
for name in ("teacher", "student-ce", "student-kd"):
    s = json.loads((out / name / "summary.json").read_text())
    print(f"{name:<12} {s['student']:<9} {s['method']:<6} {s['top1_last']:>9.2f} {s['top1_best']:>9.2f} "
          f"{s['wall_seconds']:>8.0f} {s['train_images_per_second']:>7.0f}")
PY
