"""REFILLED's other settings, from the runs of `kdforge bench accuracy cifar10-gkd-cpu` (or, with --suite
cifar10-paper-gkd-cpu --budget eN, of the paper regime): one-step incremental learning (old 0-4 / new 5-9 / all accuracy of students trained on all
ten classes, with an old-class teacher for rkd and refilled) and few-shot learning (5-way 1- and 5-shot
nearest-centroid episodes on the novel classes 5-9 with students trained on the base classes 0-4;
600 episodes per seed, 15 queries per class), over the seeds whose run folders are here, each student against the
CE student paired by seed.

    .venv/bin/python bench/refilled_protocols.py [--suite cifar10-gkd-cpu] [--budget small] [--root runs/bench]
        [--seeds 3] [--out results/<suite stem>-protocols.md]

Runs that are not there yet are listed as missing; nothing is trained here. `kdforge bench results` reads the
JSON written beside the page: a few-shot student's verdict there is on these episodes, not on its base-class top-1.
A (student, seed) that JSON already holds is kept as read, also when its run folder is gone (a new machine has no
runs/): only the runs not read yet are evaluated, and nothing read is lost. --recompute reads every run here again.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
from pathlib import Path

from kdforge.bench.accuracy import read_rows, results_stem
from kdforge.bench.episodes import CE_STUDENT
from kdforge.bench.report import format_difference, paired_difference
from kdforge.bench.suites import SUITES
from kdforge.data import DataConfig, load_data  # noqa: E402
from kdforge.engine.models import load_model  # noqa: E402
from kdforge.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from kdforge.protocols import fewshot_episodes, group_accuracy, outputs  # noqa: E402

OLD, NEW = list(range(5)), list(range(5, 10))


def model_of(run: Path, in_channels: int = 3):
    """The model a run folder or checkpoint file holds, built from its recorded architecture."""
    return load_model(run, in_channels=in_channels)


def run_folders(root: Path, suite_name: str, budget: str, seeds: int) -> tuple[dict, dict]:
    """Per student, the run folders of seeds 0..seeds-1 that are here, of the suite's incremental and few-shot cells
    (every row there), and the plain CE student on all classes (the incremental reference: the suite's same/ce)."""
    suite = SUITES.get(suite_name)
    base = root / results_stem(suite_name, budget)
    rows = [v.name for v in suite.rows]

    def ce_all(seed: int) -> Path:
        folder = base / "same" / f"ce-s{seed}"
        if suite_name == "cifar10-gkd-cpu" and not folder.exists():
            folder = root / "cifar10-cpu" / f"ce-s{seed}"  # same/ce was adopted from cifar10-cpu, whose folder holds it
        return folder

    def present(folders: list[Path]) -> dict[int, Path]:
        return {seed: f for seed, f in enumerate(folders) if (f / "summary.json").exists()}

    incremental = {CE_STUDENT: present([ce_all(s) for s in range(seeds)])}
    incremental.update({r.split("/")[1]: present([base / "incremental" / f"{r.split('/')[1]}-s{s}" for s in range(seeds)])
                        for r in rows if r.startswith("incremental/")})
    fewshot = {(CE_STUDENT if r == "fewshot/ce" else r.split("/")[1]):
               present([base / "fewshot" / f"{r.split('/')[1]}-s{s}" for s in range(seeds)])
               for r in rows if r.startswith("fewshot/")}
    return incremental, fewshot


def recorded(path: Path) -> dict:
    """What an earlier reading wrote ({"incremental": {student: {seed: ...}}, "fewshot": ...}; seeds as ints), or
    nothing read yet."""
    if not path.exists():
        return {"incremental": {}, "fewshot": {}}
    earlier = json.loads(path.read_text())
    return {part: {name: {int(seed): value for seed, value in per_seed.items()}
                   for name, per_seed in earlier.get(part, {}).items()} for part in ("incremental", "fewshot")}


def unread(folders: dict[str, dict[int, Path]], read: dict) -> list[tuple[str, int, Path]]:
    """(student, seed, run folder) of every run here that `read` does not hold yet."""
    return [(name, seed, run) for name, runs in folders.items() for seed, run in sorted(runs.items())
            if seed not in read.get(name, {})]


def ce_from_table(table: Path, seeds: int) -> dict[int, dict[str, float]]:
    """The incremental reference (`same/ce`, the CE student on all ten classes) per seed, from the suite's table
    where its run folder is gone: its test top-1 over all ten classes is the protocol's "all" figure exactly (the
    old / new split of it needs the weights)."""
    return {int(r["seed"]): {"all": float(r["top1_last"])} for r in read_rows(table)
            if r["method"] == "same/ce" and int(r["seed"]) < seeds}


@functools.cache
def _test_split(classes: tuple[int, ...] | None):
    """The CIFAR-10 test split (of `classes` only, when given), decoded once and only when a run needs it."""
    return load_data(DataConfig(dataset="cifar10-jpeg", classes=list(classes) if classes else None))


def _mean(per_seed: dict[int, float]) -> str:
    values = list(per_seed.values())
    if not values:
        return "–"
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.2f}{spread}"


def _versus_ce(per_student: dict[str, dict[int, float]], name: str) -> str:
    """The student minus the CE student, paired by seed, with the paired-t 95 % interval across seeds."""
    rows = [{"method": student, "seed": seed, "top1_last": value}
            for student, per_seed in per_student.items() for seed, value in per_seed.items()]
    return format_difference(paired_difference(rows, name, CE_STUDENT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="cifar10-gkd-cpu")
    parser.add_argument("--budget", default="small")
    parser.add_argument("--root", default="runs/bench")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1, each where its run folder is here")
    parser.add_argument("--out", help="default results/<suite stem>-protocols.md")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--recompute", action="store_true", help="read every run here again, not only the new ones")
    args = parser.parse_args()
    incremental, fewshot = run_folders(Path(args.root), args.suite, args.budget, args.seeds)
    args.out = args.out or f"results/{results_stem(args.suite, args.budget)}-protocols.md"
    record = {"incremental": {}, "fewshot": {}} if args.recompute else recorded(Path(args.out).with_suffix(".json"))
    groups = {"old": OLD, "new": NEW, "all": OLD + NEW}
    for name, seed, run in unread(incremental, record["incremental"]):
        logits, _, labels = outputs(model_of(run), _test_split(None).stream("test", 1000, train=False))
        record["incremental"].setdefault(name, {})[seed] = group_accuracy(logits, labels, groups)
    reference = record["incremental"].setdefault(CE_STUDENT, {})
    for seed, figure in ce_from_table(Path("results") / f"{results_stem(args.suite, args.budget)}.csv", args.seeds).items():
        reference.setdefault(seed, figure)  # the CE student's run folder is gone: its top-1 over all ten classes
    for name, seed, run in unread(fewshot, record["fewshot"]):
        _, features, labels = outputs(model_of(run), _test_split(tuple(NEW)).stream("test", 1000, train=False))
        record["fewshot"].setdefault(name, {})[seed] = {
            f"{shot}-shot": fewshot_episodes(features, labels, 5, shot, 15, args.episodes, seed=0) for shot in (1, 5)}
    lines = _page(args, record, incremental, fewshot)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    atomic_write_json(Path(args.out).with_suffix(".json"), record)
    print("\n".join(lines))
    return 0


def _rows(students, figures: dict, shown: tuple[str, ...], against_ce: tuple[str, ...]) -> list[str]:
    """A table row per student: its seeds, the mean of each `shown` figure over them, and the paired difference to
    the CE student of each `against_ce` figure. `figures`: student -> seed -> figure name -> value."""
    lines = []
    for name in students:
        if name not in figures:
            lines.append(f"| {name} | none here |" + " |" * (len(shown) + len(against_ce)))
            continue
        means = [_mean({seed: f[k] for seed, f in figures[name].items() if k in f}) for k in shown]
        versus = [_versus_ce({n: {seed: f[k] for seed, f in per_seed.items()} for n, per_seed in figures.items()}, name)
                  for k in against_ce]
        lines.append(f"| {name} | {', '.join(map(str, sorted(figures[name])))} | " + " | ".join(means + versus) + " |")
    return lines


def _page(args, record: dict, incremental: dict, fewshot: dict) -> list[str]:
    lines = [f"# REFILLED protocols: {args.suite} ({args.budget})", "",
             f"Generated by `.venv/bin/python bench/refilled_protocols.py --suite {args.suite} --budget {args.budget}` "
             f"from the runs of `kdforge bench accuracy {args.suite}` (seeds 0-{args.seeds - 1}, each where its run "
             f"folder is here): {SUITES.get(args.suite).description}. Teachers trained on the old / base classes 0-4; "
             "the rows' settings are the suite's (docs/methods/refilled.md). Means over seeds ± their standard "
             "deviation; differences to the CE student paired by seed, with a paired-t 95 % interval.", "",
             "## One-step incremental learning", "",
             "Students trained on all ten classes; rkd and refilled distil from the old-class teacher. Top-1 over "
             "the test images of each group, predicting among all ten classes. Where the CE student's run folder "
             "is gone, its \"all\" figure is its test top-1 from the suite's table (the same quantity) and its "
             "old / new columns show –.", "",
             "| student | seeds | old (0-4) | new (5-9) | all | all − ce |", "|---|---|---|---|---|---|"]
    lines += _rows(incremental, record["incremental"], ("old", "new", "all"), ("all",))
    lines += ["", "## Few-shot learning", "",
              f"Students trained on the base classes 0-4 (refilled from the base-class teacher); {args.episodes} "
              "episodes per seed of 5-way nearest-centroid classification (cosine) on the test images of the novel "
              "classes 5-9, 15 queries per class (one seed's 95 % episode interval is about ±0.5 to ±0.8).", "",
              "| student | seeds | 5-way 1-shot | 5-way 5-shot | 1-shot − ce | 5-shot − ce |", "|---|---|---|---|---|---|"]
    episodes = {name: {seed: {k: cell["mean"] for k, cell in cells.items()} for seed, cells in per_seed.items()}
                for name, per_seed in record["fewshot"].items()}
    lines += _rows(fewshot, episodes, ("1-shot", "5-shot"), ("1-shot", "5-shot"))
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
