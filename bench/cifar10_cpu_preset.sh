#!/usr/bin/env bash
# The CPU preset's reference runs on CIFAR-10 (JPEG): teacher resnet20 (30 epochs), then student resnet8
# (15 epochs, seed 0) with each method named (default: ce kd) from that teacher. A method with its own
# preset (cifar10-cpu-<method>, e.g. the budget-scaled DKD warm-up) uses it. Resumable: a finished run
# (summary.json) is skipped and an interrupted one continues from its last checkpoint. Prints the table.
#   bash bench/cifar10_cpu_preset.sh [METHOD ...]     # OUT=runs/cifar10-cpu THREADS=2 by default
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

METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=(ce kd)

run teacher cifar10-cpu-teacher
for m in "${METHODS[@]}"; do
  preset=cifar10-cpu-student
  if "$KDFORGE" list presets | grep -qx "cifar10-cpu-$m"; then preset="cifar10-cpu-$m"; fi
  if [ "$m" = ce ]; then run "student-$m" "$preset" method=ce
  else run "student-$m" "$preset" method="$m" teacher_checkpoint="$OUT/teacher"; fi
done

.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'run':<12} {'model':<9} {'method':<6} {'top1 last':>9} {'top1 best':>9} {'wall s':>8} {'img/s':>7}")
for path in [out / "teacher"] + sorted(p for p in out.glob("student-*") if (p / "summary.json").exists()):
    name = path.name
    s = json.loads((path / "summary.json").read_text())
    print(f"{name:<12} {s['student']:<9} {s['method']:<6} {s['top1_last']:>9.2f} {s['top1_best']:>9.2f} "
          f"{s['wall_seconds']:>8.0f} {s['train_images_per_second']:>7.0f}")
PY
