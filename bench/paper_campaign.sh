#!/bin/bash
# The paper-regime suite at its chosen schedule (cifar10-paper-cpu, e240), run in two 1-thread lanes, resumable:
# every command skips what is already recorded, so re-running a phase continues it. Phases, in order:
#   selection  the free hyper-parameters the spec leaves to us, chosen on the validation split (`kdforge sweep`,
#              2 seeds each, 1,000 validation images per class): KR's weight (lambda_KR 1 / 10 / 100; 0.1 is
#              diagnosed too weak in results/kr_prior_strength.md) and, per IC-KD paradigm, the ablation
#              (PICD only / NICD only / both), the warm-up of the in-context terms (teacher-free; online keeps a
#              tenth of the schedule) and their strength
#   claims     the rows that test the four methods' claims and their baselines, 3 seeds; an IC-KD paradigm's row
#              once its selection is done (re-run the phase after it)
#   baselines  the baselines added beside mdistiller's and the current logit methods (NST, PKT, SP, VID, OFD,
#              KDSVD, ReviewKD, DIST, KD and DKD with logit standardisation), 3 seeds
#   rest       every other registered method, 3 seeds
#   kr         KR's capacity suite (cifar10-paper-kr-cpu), 3 seeds
#   gkd        REFILLED's settings (cifar10-paper-gkd-cpu), 3 seeds, then their incremental and few-shot protocols
#              (bench/refilled_protocols.py) and the results page
# A choice made in `selection` is written into the suite's rows (src/kdforge/bench/suites.py, the chosen cell's
# settings spelled out) and the method's doc page by hand, with the sweep's table, before `claims` runs those rows.
# `claims` first adopts the sweeps' runs of the chosen cells: a run with exactly a row's settings at its seed is
# that row's run (training is deterministic), so only the seeds the sweeps did not run are trained.
# With FINISH_BY=HH:MM (or an ISO date-time) in the environment, the suites' runs start only when they can finish by
# then (`kdforge bench accuracy --finish-by`, `kdforge sweep --finish-by`, each timed by the runs recorded before);
# a phase that leaves runs unstarted exits non-zero.
#     bench/paper_campaign.sh PHASE        (from the repository root; KDFORGE_DATA as for make)
set -euo pipefail
source "$(dirname "$0")/finish_by.sh"  # HH:MM: one moment for every command below
phase=${1:?usage: bench/paper_campaign.sh selection|claims|baselines|rest|kr|gkd}
export KDFORGE_DATA=${KDFORGE_DATA:-$(cd .. && pwd)/shared/data}
KD=".venv/bin/kdforge"
SCHEDULE=("epochs=240" "optim.milestones=[150,180,210]" "eval_every=24")
lanes() {  # lanes "ROWS" SUITE: every (row, seed) run is one job; two 1-thread lanes take the next job as they
  # free up, so neither waits on the other (the teacher-output cache is written atomically, so lanes may share it).
  # Each row's teacher is trained first, at 2 threads, so that two lanes never train the same teacher
  for row in ${1//,/ }; do $KD bench teacher "$2" --budget e240 --row "$row" --threads 2 > /dev/null; done
  for row in ${1//,/ }; do for seed in 0 1 2; do
    echo "$KD bench accuracy $2 --budget e240 --methods $row --seeds 3 --only-seeds $seed --threads 1${FINISH_BY:+ --finish-by $FINISH_BY}"
  done; done | xargs -P 2 -I{} sh -c {}
}
case $phase in
  selection)
    # the online and teacher-free sweeps train without the teacher (their runs' settings are then exactly their
    # suite rows', so the suite adopts them); only the offline sweeps name it, and only they wait for it
    free=(cifar10-paper-cpu-student "${SCHEDULE[@]}" threads=1 progress=false tensorboard=false)
    with_teacher() {
      teacher=$($KD bench teacher cifar10-paper-cpu --budget e240)
      common=("${free[@]}" "teacher_checkpoint=$teacher" teacher_cache=true teacher_cache_dtype=float32)
    }
    # each sweep in two lanes (one seed each); read on 1,000 validation images per class (the runs' own 100 per
    # class carry about 1.4 points of standard error: as large as the differences being chosen between)
    pick=(--seeds 2 --select-on val --val-per-class 1000 ${FINISH_BY:+--finish-by "$FINISH_BY"})
    wait_all() {  # the lanes started in the background; fails as one of them failed (a sitting that is over: 3)
      local rc=0 pid
      for pid in $(jobs -p); do wait "$pid" || rc=$?; done
      return $rc
    }
    # a sweep whose choice is written is done: its choice is in the suite (sweeps finished before their runs were
    # kept in a ledger would otherwise train again on a machine without their folders)
    sweep_done() { test -f "results/sweeps/$1.json"; }
    chosen_of() {  # a finished sweep's choice, as the settings it sets (KEY=VALUE ...)
      .venv/bin/python -c "
import json; c = json.load(open('results/sweeps/$1.json'))['chosen']
print(' '.join(f'{k}={v}' for k, v in c.items()))"
    }
    sweep_done paper-kr-weight && sweep_done paper-ickd-ablation && sweep_done paper-ickd-terms || with_teacher
    sweep_done paper-kr-weight || for s in 0 1; do
      $KD sweep "${common[@]}" method=kr --grid method_args.kr_weight=1,10,100 "${pick[@]}" --only-seeds $s \
        --name paper-kr-weight &
    done
    wait_all
    # IC-KD per paradigm: the ablation (PICD only / NICD only / both / neither, which is the paradigm's baseline:
    # KD offline, DML online, CE teacher-free); online and teacher-free with the in-context terms warming up over
    # a tenth of the schedule (their bank is written by a model that is itself weak early on), then the warm-up
    # itself chosen for the ablation's winner
    ablation=(--grid method_args.picd_weight=1,0 --grid method_args.nicd_weight=0.5,0)
    sweep_done paper-ickd-ablation || for s in 0 1; do
      $KD sweep "${common[@]}" method=ickd "${ablation[@]}" "${pick[@]}" --only-seeds $s --name paper-ickd-ablation &
    done
    wait_all
    # IC-KD needs an in-context term: the offline default is the best cell that has one (the same runs, re-read)
    sweep_done paper-ickd-terms || $KD sweep "${common[@]}" method=ickd "${pick[@]}" --name paper-ickd-terms --reuse runs/sweeps/paper-ickd-ablation \
      --reuse results/sweeps/paper-ickd-ablation.runs.jsonl \
      --cell "picd-only: method_args.picd_weight=1 method_args.nicd_weight=0" \
      --cell "nicd-only: method_args.picd_weight=0 method_args.nicd_weight=0.5" \
      --cell "both: method_args.picd_weight=1 method_args.nicd_weight=0.5"
    # online and teacher-free: the cells with an in-context term, one by one (the "neither" cell is the paradigm's
    # baseline, DML or CE, a suite row of its own), the in-context terms warming up over a tenth of the schedule
    # (their bank is written by a model that is itself weak early on); then the winner's warm-up and strength
    cells=(--cell "picd-only: method_args.picd_weight=1 method_args.nicd_weight=0"
           --cell "nicd-only: method_args.picd_weight=0 method_args.nicd_weight=0.5"
           --cell "both: method_args.picd_weight=1 method_args.nicd_weight=0.5")
    # teacher-free first: its runs take a quarter of an online run's time (one network, no peer)
    for m in ickd_tf ickd_online; do
      sweep_done paper-$m-weight && continue
      for s in 0 1; do
        $KD sweep "${free[@]}" method=$m method_args.warmup_epochs=24 "${cells[@]}" "${pick[@]}" --only-seeds $s \
          --name paper-$m-terms &
      done
      wait_all
      chosen=$(chosen_of paper-$m-terms)
      if [ $m = ickd_tf ]; then
        for s in 0 1; do
          $KD sweep "${free[@]}" method=$m $chosen --grid method_args.warmup_epochs=1,24,60 "${pick[@]}" \
            --only-seeds $s --name paper-$m-warmup --reuse runs/sweeps/paper-$m-terms \
            --reuse results/sweeps/paper-$m-terms.runs.jsonl &  # 24: the terms sweep's runs
        done
        wait_all
        warm=$(chosen_of paper-$m-warmup) base=paper-$m-warmup
      else
        # online keeps the terms sweep's warm-up, a tenth of the schedule: the teacher-free warm-up sweep, whose
        # bank is also written by a student that starts from scratch, found 1, 24 and 60 epochs within noise
        # (results/sweeps/paper-ickd_tf-warmup.md), and an online run costs as much as four teacher-free ones
        warm="method_args.warmup_epochs=24" base=paper-$m-terms
      fi
      # then the terms' strength: the chosen weights as they are, and scaled by 0.3 and 0.1. The bank of these
      # paradigms is written by the students themselves, and at full strength the terms can keep a small student
      # from fitting its training set (teacher-free PICD only: train top-1 81-82 % against ce's 96 %)
      mapfile -t strengths < <(.venv/bin/python -c "
for f in (1, 0.3, 0.1):
    print(f'x{f:g}: ' + ' '.join(f'{k}={float(v) * f:g}' for k, v in [w.split('=') for w in '$chosen'.split()]))")
      weight_cells=()
      for cell in "${strengths[@]}"; do weight_cells+=(--cell "$cell"); done
      for s in 0 1; do
        $KD sweep "${free[@]}" method=$m $warm "${weight_cells[@]}" "${pick[@]}" --only-seeds $s \
          --name paper-$m-weight --reuse runs/sweeps/$base \
          --reuse results/sweeps/$base.runs.jsonl &  # x1: the warm-up (teacher-free) or terms (online) sweep's runs
      done
      wait_all
    done ;;
  claims)
    for sweep in runs/sweeps/paper-* results/sweeps/paper-*.runs.jsonl; do
      # a sweep still under way may have no finished run yet: kdforge says so in one line, and claims goes on
      if [ -e "$sweep" ]; then $KD bench adopt "$sweep" cifar10-paper-cpu --budget e240 || true; fi
    done
    # an IC-KD paradigm's row runs once its selection is done and its choice is written into the suite's row (the
    # row carries the chosen weights); until then the other rows go ahead (the online selection alone takes about
    # 17 lane-hours) and the row waits for a re-run of this phase
    rows="ickd-tf,tfkd,ls,tfkd-self,refilled,refilled-paper,ckd,ckd-paper,ickd,kr,kr_kd,dml,ickd-online"
    for m in ickd_tf ickd_online; do
      if ! .venv/bin/python -c "
import json, sys
from pathlib import Path
from kdforge.bench.accuracy import AccuracyBench
from kdforge.bench.suites import SUITES
sweep = Path('results/sweeps/paper-$m-weight.json')
if not sweep.exists():
    sys.exit('claims: ${m/_/-} waits for its selection (bench/paper_campaign.sh selection)')
bench = AccuracyBench(SUITES.get('cifar10-paper-cpu'), 'e240', Path('runs/bench'), Path('results'), echo=print)
args = bench.student_config({v.name: v for v in bench.variants(None)}['${m/_/-}'], 0, None)[0].method_args
missing = {k: v for k, v in json.loads(sweep.read_text())['chosen'].items()
           if float(args.get(k.split('.', 1)[1], 'nan')) != float(v)}
if missing:
    sys.exit(f'claims: ${m/_/-} waits until its row in src/kdforge/bench/suites.py carries the choice of {sweep}: {missing}')
"; then
        rows=$(echo "$rows" | tr , '\n' | grep -vx "${m/_/-}" | paste -sd,)
      fi
    done
    lanes "$rows" cifar10-paper-cpu ;;
  baselines) lanes "nst,pkt,sp,vid,ofd,kdsvd,reviewkd,dist,kd+logitstd,dkd+logitstd" cifar10-paper-cpu ;;
  rest)
    rows=$(.venv/bin/python -c "
from kdforge.bench.suites import SUITES; from kdforge.methods import METHODS
done = {'ce','kd','ckd','ckd-paper','ickd','ickd-online','ickd-tf','dml','tfkd','ls','tfkd-self','kr','kr_kd','refilled','refilled-paper',
        'nst','pkt','sp','vid','ofd','kdsvd','reviewkd','dist','kd+logitstd','dkd+logitstd'}  # claims' and baselines' rows
import sys
from pathlib import Path
rows = [v.name for v in SUITES.get('cifar10-paper-cpu').variants(METHODS.names()) if v.name not in done]
flags = Path('/proc/cpuinfo').read_text().split() if Path('/proc/cpuinfo').exists() else []
if not {'avx512_bf16', 'amx_bf16'} & set(flags):
    # without bf16 units bf16 autocast is emulated: a resnet8 run took ~6 h on an AVX2 CPU instead of ~25 min
    print('rest: the -bf16 rows wait for a CPU with bf16 units (avx512_bf16 or amx_bf16)', file=sys.stderr)
    rows = [r for r in rows if not r.endswith('-bf16')]
print(','.join(rows))")
    lanes "$rows" cifar10-paper-cpu ;;
  kr)
    # the resnet8 rows train exactly what the main suite's ce / kd / kr / kr_kd train: their runs are copied
    $KD bench adopt cifar10-paper-cpu cifar10-paper-kr-cpu --budget e240
    # the least capable student first: the claim is that KR helps it most
    lanes "resnet8x0.5/ce,resnet8x0.5/kd,resnet8x0.5/kr,resnet8x0.5/kr_kd,resnet8/ce,resnet8/kd,resnet8/kr,resnet8/kr_kd,resnet14/ce,resnet14/kd,resnet14/kr,resnet14/kr_kd" cifar10-paper-kr-cpu ;;
  gkd)
    # the `same` cell trains exactly the main suite's ce / kd / rkd / refilled / refilled-paper: their runs are copied
    # (about 15 lane-hours not trained twice), and only seeds the main suite has not recorded are trained here
    $KD bench adopt cifar10-paper-cpu cifar10-paper-gkd-cpu --budget e240
    lanes "$(.venv/bin/python -c "
from kdforge.bench.suites import SUITES; print(','.join(v.name for v in SUITES.get('cifar10-paper-gkd-cpu').rows))")" cifar10-paper-gkd-cpu
    # then the incremental runs' old / new accuracy and the few-shot runs' novel-class episodes (the few-shot
    # claim's own measure, which the results page reads)
    .venv/bin/python bench/refilled_protocols.py --suite cifar10-paper-gkd-cpu --budget e240 > /dev/null
    $KD bench results ;;
  *) echo "bench/paper_campaign.sh: unknown phase $phase (selection, claims, baselines, rest, kr, gkd)" >&2; exit 2 ;;
esac
