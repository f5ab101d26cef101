#!/bin/bash
# The CPU detection suite (`kdforge bench detection`) in two 1-thread lanes, resumable: the canvases and the
# teacher first, on both cores (one process, so that two lanes never train the same teacher), then every
# (row, seed) student run as a job that the next free lane takes. Jobs go seed by seed, so a cut-off campaign has
# every row at its first seeds rather than some rows at three. Each command skips what is already recorded.
# FINISH_BY=HH:MM (or an ISO date-time): students start only when they can finish by then (the teacher, which
# has no recorded run to be timed by, is not held back); runs left unstarted make the script exit non-zero.
#     bench/detection_campaign.sh [SEEDS]      (from the repository root; KDFORGE_DATA as for make; SEEDS 3)
set -euo pipefail
source "$(dirname "$0")/finish_by.sh"  # HH:MM: one moment for every command below
seeds=${1:-3}
export KDFORGE_DATA=${KDFORGE_DATA:-$(cd .. && pwd)/shared/data}
KD=".venv/bin/kdforge"
$KD bench detection --seeds 0 --threads 2  # the canvases and the teacher only (no seed)
for seed in $(seq 0 $((seeds - 1))); do for row in ce kd dkd ckd reviewkd reviewkd+dkd reviewkd+ckd; do
  echo "$KD bench detection --seeds $seeds --methods $row --only-seeds $seed --threads 1${FINISH_BY:+ --finish-by $FINISH_BY}"
done; done | xargs -P 2 -I{} sh -c {}
