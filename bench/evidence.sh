#!/bin/bash
# Every measurement the open questions still wait on, in the order they are run on the 2-core machine, each step
# resumable (a re-run skips what is recorded and continues what was cut off), so one command restarts the whole
# campaign after an interruption:
#   claims     the paper-regime rows that test the four methods' claims (bench/paper_campaign.sh claims)
#   baselines  the baselines added beside mdistiller's and the current logit methods, paper regime
#   detection  the CPU detection suite, 3 seeds (bench/detection_campaign.sh)
#   compile    compilation's accuracy check (bench/defaults_sweeps.sh compile)
#   speed      a suite in today's defaults against the old ones, on both cores (bench/suite_speed.py)
#   selection  the IC-KD paradigms' free settings, chosen on the validation split (bench/paper_campaign.sh)
#   claims2    the claims' rows again: those whose selection was written into the suite since
#   rest       every other registered method in the paper regime
#   kr         KR's capacity suite
#   gkd        REFILLED's settings suite
# A choice made in `selection` is written into the suite's rows by hand before `claims2` (bench/paper_campaign.sh).
# The campaign stops at the first step that fails (a later step may read what it writes); re-running continues it.
# A sitting with an end: FINISH_BY=HH:MM (or an ISO date-time) starts only the suites' runs that can finish by
# then; the step that leaves runs unstarted fails, so the campaign stops there (a sweep's runs are timed by its
# recorded runs; a teacher, or a sweep or suite with no recorded run, has nothing to be timed by and is not held
# back: start those steps early in a sitting).
#     bench/evidence.sh [STEP ...]      (from the repository root; KDFORGE_DATA as for make; all steps by default)
set -euo pipefail
source "$(dirname "$0")/finish_by.sh"  # HH:MM: one moment for every command below
ALL=(claims baselines detection compile speed selection claims2 rest kr gkd)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${ALL[@]}")
for step in "${steps[@]}"; do
  if [[ ! " ${ALL[*]} " =~ " $step " ]]; then
    echo "bench/evidence.sh: unknown step '$step'; steps: ${ALL[*]}" >&2; exit 2
  fi
done
here=$(dirname "$0")
for step in "${steps[@]}"; do
  echo "=== $(date +%T) $step"
  case $step in
    claims2) bash "$here/paper_campaign.sh" claims ;;
    detection) bash "$here/detection_campaign.sh" 3 ;;
    compile) bash "$here/defaults_sweeps.sh" compile ;;
    speed) .venv/bin/python "$here/suite_speed.py" --threads 2 ${FINISH_BY:+--finish-by "$FINISH_BY"} ;;
    *) bash "$here/paper_campaign.sh" "$step" ;;
  esac
  echo "=== $(date +%T) $step done"
done
