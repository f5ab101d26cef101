#!/bin/bash
# The choices behind the short-budget suites' settings, each made by `kdforge sweep` on a validation split drawn
# outside the training subset (the test split is never read for a choice). Resumable: re-running a phase
# continues it and rewrites its table when every run is done.
#   kr        KR's lambda_KR and rho on the fmnist-cpu suite (9 cells, 1 seed)
#             -> results/sweeps/fmnist-kr-defaults.md
#   ickd      IC-KD (offline): the spec's starting point and eight variations (PICD / NICD / both, aggregation,
#             k, weights) on the fmnist-cpu suite (3 seeds) -> results/sweeps/fmnist-ickd-defaults.md
#   refilled  REFILLED's stage-2 weight on the cifar10-cpu suite: stage 2 re-run from one finished stage 1
#             (cifar10-cpu refilled-spec, seed 0), 2 seeds -> results/sweeps/cifar10-cpu-refilled-stage2.md
#   compile   the `compile: auto` default's condition: cifar10-cpu's kd row trained compiled and eager, 3 seeds each,
#             the same weights up to fused rounding -> results/sweeps/cifar10-cpu-compile-accuracy.md (a check,
#             nothing is chosen: both cells are read side by side)
# FINISH_BY=HH:MM (or an ISO date-time) holds back the compile phase's runs that its recorded runs say cannot
# finish by then (`kdforge sweep --finish-by`).
#     bench/defaults_sweeps.sh kr|ickd|refilled|compile      (from the repository root; KDFORGE_DATA as for make)
set -euo pipefail
source "$(dirname "$0")/finish_by.sh"  # HH:MM: one moment for every command below
phase=${1:?usage: bench/defaults_sweeps.sh kr|ickd|refilled|compile}
export KDFORGE_DATA=${KDFORGE_DATA:-$(cd .. && pwd)/shared/data}
KD=".venv/bin/kdforge"
need() {  # need PATH WHAT: stop with one line when a run the sweep starts from is missing
  [ -e "$1" ] || { echo "bench/defaults_sweeps.sh: $1 is missing; first run: $2" >&2; exit 2; }
}
fmnist() {  # the fmnist-cpu suite's teacher and student, 100 validation images per class
  teacher=$($KD bench teacher fmnist-cpu)  # trained first if this machine has none
  common=(fmnist-cpu-student "teacher_checkpoint=$teacher" data.val_per_class=100 threads=1 tensorboard=false
          teacher_cache=true teacher_cache_dtype=float32)
}
case $phase in
  kr)
    fmnist
    $KD sweep "${common[@]}" method=kr method_args.rho=0.1 --seeds 1 --name fmnist-kr-defaults \
      --cell "method_args.kr_weight=0.01" --cell "method_args.kr_weight=0.1" --cell "method_args.kr_weight=1" \
      --cell "method_args.kr_weight=10" --cell "method_args.kr_weight=100" \
      --cell "method_args.kr_weight=1 method_args.rho=0.3" --cell "method_args.kr_weight=1 method_args.rho=1" \
      --cell "method_args.kr_weight=10 method_args.rho=0.3" --cell "method_args.kr_weight=10 method_args.rho=1" ;;
  ickd)
    fmnist
    $KD sweep "${common[@]}" method=ickd method_args.picd_weight=1 method_args.nicd_weight=0.5 \
      method_args.aggregation=weighted method_args.k_pos=8 method_args.k_neg=8 --seeds 3 --name fmnist-ickd-defaults \
      --cell "kd-only: method_args.picd_weight=0 method_args.nicd_weight=0" \
      --cell "picd-only: method_args.nicd_weight=0" --cell "nicd-only: method_args.picd_weight=0" --cell "both: " \
      --cell "uniform: method_args.aggregation=uniform" --cell "k4: method_args.k_pos=4 method_args.k_neg=4" \
      --cell "k16: method_args.k_pos=16 method_args.k_neg=16" --cell "nicd1: method_args.nicd_weight=1" \
      --cell "picd2: method_args.picd_weight=2" ;;
  refilled)
    stage2=runs/bench/cifar10-cpu/refilled-spec-s0/stage2
    need "$stage2/config.json" "$KD bench accuracy cifar10-cpu --methods refilled-spec --seeds 1"
    $KD sweep "$stage2" threads=1 tensorboard=false --grid method_args.stage2_weight=100,10,1,0 --seeds 2 \
      --name cifar10-cpu-refilled-stage2 ;;
  compile)
    teacher=$($KD bench teacher cifar10-cpu)
    # one seed per job, two 1-thread lanes taking the next as they free up (each rewrites the table when it ends)
    for s in 0 1 2; do
      echo "$KD sweep cifar10-cpu-student method=kd teacher_checkpoint=$teacher threads=1 tensorboard=false \
        progress=false --grid compile=true,false --seeds 3 --only-seeds $s --select-on val --val-per-class 200 \
        --name cifar10-cpu-compile-accuracy${FINISH_BY:+ --finish-by $FINISH_BY}"
    done | xargs -P 2 -I{} sh -c {} ;;
  *) echo "bench/defaults_sweeps.sh: unknown phase $phase (kr, ickd, refilled, compile)" >&2; exit 2 ;;
esac
