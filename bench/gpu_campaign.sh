#!/usr/bin/env bash
# The paper-regime suite on a lent GPU (cifar10-paper-gpu at e240): up to 8 (row, seed) jobs at once in one device
# call, each a `kdforge bench accuracy` process with its own results folder; what each job left (its CSV, its run
# folder with the last checkpoint, finished or not) is packed as one file, so a cut-off call still brings back
# resumable runs. Then, here, `merge` unpacks them into runs/bench and appends the new rows to results/.
#
#   on the device (repository root; carry .gpudata (cifar10-jpeg.tar.gz) and the teacher's folder
#   runs/bench/teachers/cifar10-paper-cpu-<key>):
#       bash bench/gpu_campaign.sh run SECONDS ROW:SEED ...      (writes $OUT/job-N.tar.gz)
#   here, on the files that came back:
#       bash bench/gpu_campaign.sh merge FOLDER                  (FOLDER holds job-*.tar.gz)
# A later call with the same jobs resumes the unfinished ones (carry their run folders, or merge first: merge puts
# them back where `run` looks).
set -euo pipefail
cd "$(dirname "$0")/.."
# the suite, its budget and the folders: fixed for the campaign; the tests drive the same script on a small suite
SUITE=${GPU_CAMPAIGN_SUITE:-cifar10-paper-gpu}
BUDGET=${GPU_CAMPAIGN_BUDGET:-e240}
RUNS=${GPU_CAMPAIGN_RUNS:-runs/bench}
RESULTS=${GPU_CAMPAIGN_RESULTS:-results}
STEM=$SUITE-$BUDGET
[ "$BUDGET" = small ] && STEM=$SUITE
verb=${1:?usage: bench/gpu_campaign.sh run SECONDS ROW:SEED ... | merge FOLDER}
shift
case $verb in
  run)
    seconds=${1:?the seconds each job may run}
    shift
    [ $# -ge 1 ] && [ $# -le 8 ] || { echo "gpu_campaign: give 1 to 8 ROW:SEED jobs" >&2; exit 2; }
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; export PYTHONPATH="$PWD/src"; fi
    export KDFORGE_DATA=${KDFORGE_DATA:-$PWD/.gpudata} PYTHONUNBUFFERED=1
    out=$(cd "${OUT:?OUT: the folder whose files come back}" && pwd)
    n=0
    for job in "$@"; do
      row=${job%%:*} seed=${job##*:}
      n=$((n + 1))
      (timeout "$seconds" $py -m kdforge bench accuracy "$SUITE" --budget "$BUDGET" --methods "$row" --seeds 3 \
         --only-seeds "$seed" --threads 2 --root "$RUNS" --results "$out/res-$n" > "$out/job-$n.log" 2>&1 || true) &
    done
    wait
    n=0
    for job in "$@"; do
      row=${job%%:*} seed=${job##*:}
      n=$((n + 1))
      run="$STEM/$row-s$seed"
      [ -d "$RUNS/$run" ] || { echo "job $job: no run folder (see job-$n.log)"; continue; }
      # the run folder (its last checkpoint: resumable), this job's CSV and its log; then nothing else is left
      extra=("job-$n.log")
      [ -d "$out/res-$n" ] && extra+=("res-$n")  # no CSV when the run did not finish in time
      tar -czf "$out/job-$n.tar.gz" --exclude=checkpoint.prev.pt -C "$RUNS" "$run" -C "$out" "${extra[@]}"
      rm -rf "${out:?}/res-$n" "$out/job-$n.log"
      echo "job $job: packed in job-$n.tar.gz"
    done ;;
  merge)
    folder=${1:?the folder holding job-*.tar.gz}
    py=.venv/bin/python
    [ -x $py ] || py=python3
    for archive in "$folder"/job-*.tar.gz; do
      tmp=$(mktemp -d)
      tar -xzf "$archive" -C "$tmp"
      mkdir -p "$RUNS/$STEM" "$RESULTS"
      cp -r "$tmp/$STEM"/. "$RUNS/$STEM"/
      for csv in "$tmp"/res-*/"$STEM.csv"; do
        [ -f "$csv" ] || continue
        $py - "$csv" "$RESULTS/$STEM.csv" <<'PY'
import sys
from pathlib import Path

from kdforge.bench.accuracy import append_row, read_rows

source, target = Path(sys.argv[1]), Path(sys.argv[2])
have = {(r["method"], r["seed"]) for r in read_rows(target)}
for row in read_rows(source):
    if (row["method"], row["seed"]) not in have:
        append_row(target, row)
        print(f"merged {row['method']} seed {row['seed']}: top-1 {row['top1_last']}")
PY
      done
      rm -rf "$tmp"
    done
    $py - "$SUITE" "$STEM" "$RESULTS" "$RUNS/$STEM" <<'PY'
import sys
from pathlib import Path

from kdforge.bench.report import write_report
from kdforge.bench.suites import SUITES

if Path(sys.argv[3], f"{sys.argv[2]}.csv").exists():
    print(write_report(SUITES.get(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])))
PY
    ;;
  *) echo "gpu_campaign: unknown verb $verb (run, merge)" >&2; exit 2 ;;
esac
