"""`kdforge bench status SUITE`: where a long suite stands, row by row: the seeds recorded, the runs under way (or
killed and resumable) with the epochs they have trained, the seeds still to run, and the hours left at the pace
of the row's recorded runs. It reads the results CSV and the run folders, and starts nothing."""

from __future__ import annotations

import functools
import json
import statistics
from collections import defaultdict
from pathlib import Path

from kdforge.bench.accuracy import AccuracyBench, read_rows, results_stem, run_folder
from kdforge.bench.deadline import cell_rows
from kdforge.bench.detection import SUITE as DETECTION_SUITE  # not an accuracy suite: `kdforge bench detection`
from kdforge.bench.report import read_csv  # the detection suite's file: box AP columns, not an accuracy suite's
from kdforge.bench.suites import SUITES


def epochs_trained(folder: Path) -> int:
    """Epochs a run folder has finished, every stage of a staged method counted (the last epoch record of each
    metrics.jsonl in the folder or one level down)."""
    total = 0
    for metrics in [folder / "metrics.jsonl", *sorted(folder.glob("*/metrics.jsonl"))]:
        if metrics.exists():
            epochs = [json.loads(line).get("epoch", 0) for line in metrics.read_text().splitlines()
                      if '"type": "epoch"' in line]
            total += max(epochs, default=0)
    return total


def suite_status(suite: str, budget: str = "small", seeds: int = 3, methods: list[str] | None = None,
                 root: str | Path = "runs/bench", results: str | Path = "results", read=read_rows) -> list[dict]:
    """One entry per row: done / running (seed -> epochs trained) / todo seeds, planned epochs, hours left
    (`read`: how the suite's CSV is read, a caller's cache)."""
    if suite == DETECTION_SUITE:
        return detection_status(seeds, methods, root, results)
    bench = AccuracyBench(SUITES.get(suite), budget, Path(root), Path(results), echo=lambda m: None)
    recorded = read(bench.csv)
    by_row = defaultdict(list)  # one pass over the runs, not one per row
    for r in recorded:
        by_row[r["method"]].append(r)
    status = []
    for variant in bench.variants(methods):
        mine = by_row[variant.name]
        planned = row_epochs(bench, variant, mine)
        folders = {seed: run_folder(bench.root / bench.stem, variant.name, seed) for seed in range(seeds)}
        # a row with no recorded run is timed by its cell's runs (a student or a setting paces alike), else the
        # suite's, per epoch over the whole dataset and scaled to the classes the row trains on
        timed_by = cell_rows(recorded, variant.name) or recorded
        per_epoch = median_pace(timed_by, [bench.class_share(r["method"]) for r in timed_by])
        per_epoch = None if per_epoch is None else per_epoch * bench.class_share(variant.name)
        status.append(row_status(variant.name, mine, folders, planned, per_epoch,
                                 stale_teacher_seeds(bench, variant, mine)))
    return status


def class_share(cfg) -> float:
    """The share of its dataset's classes a run trains on (`data.classes`; 1 for all of them, or for a dataset
    whose class count is known only once read): an epoch's cost scales with it, as the subset per class is fixed."""
    from kdforge.data import DATASETS

    total = DATASETS.get(cfg.data.dataset).num_classes
    classes = cfg.data.classes
    return len(set(classes)) / total if classes and total else 1.0


def detection_status(seeds: int = 3, methods: list[str] | None = None, root: str | Path = "runs/bench",
                     results: str | Path = "results") -> list[dict]:
    """The same entries for the CPU detection suite (`kdforge bench detection`), whose rows are its methods."""
    from kdforge.bench.detection import METHODS, student_folder
    from kdforge.config import load_config

    recorded = read_csv(Path(results) / f"{DETECTION_SUITE}.csv")
    per_epoch = median_pace(recorded)
    planned = load_config("detection-cpu-student", []).epochs
    status = []
    for method in methods or METHODS:
        mine = [r for r in recorded if r["method"] == method]
        folders = {seed: student_folder(root, method, seed) for seed in range(seeds)}
        status.append(row_status(method, mine, folders, planned, per_epoch, []))
    return status


def row_epochs(bench: AccuracyBench, variant, mine: list[dict]) -> int:
    """Epochs a run of the row trains: as its recorded runs (`mine`) count them, else as its config plans them."""
    return int(mine[0]["epochs"]) if mine else planned_epochs(bench.student_config(variant, 0, None)[0])


def planned_epochs(cfg) -> int:
    """Epochs a run of `cfg` trains, every stage of a staged method counted (as its recorded row counts them):
    REFILLED at the paper's budget runs the whole schedule twice."""
    from kdforge.methods import METHODS

    return sum(stage["epochs"] for _, stage in METHODS.get(cfg.method).pipeline(cfg)) or cfg.epochs


def median_pace(recorded: list[dict], shares: list[float] | None = None) -> float | None:
    """The median seconds per epoch of `recorded` (the row's cell's runs, else the suite's), which times a row with
    no recorded run (an estimate: methods differ); with `shares` (each run's share of the dataset's classes), per
    epoch over the whole dataset. None for no recorded run at all, which has nothing to time it by."""
    shares = shares or [1.0] * len(recorded)
    paces = [float(r["wall_seconds"]) / int(r["epochs"]) / share for r, share in zip(recorded, shares)]
    return statistics.median(paces) if paces else None


def row_status(row: str, mine: list[dict], folders: dict[int, Path], planned: int, per_epoch: float | None,
               stale: list[int]) -> dict:
    """A row's entry from its recorded runs (`mine`) and the run folder of each seed (one that exists and is not
    recorded is under way, or killed and resumable)."""
    done = sorted(int(r["seed"]) for r in mine)
    running, todo = {}, []
    for seed, folder in folders.items():
        if seed in done:
            continue
        if folder.exists():
            running[seed] = epochs_trained(folder)
        else:
            todo.append(seed)
    if mine:
        pace = statistics.mean(float(r["wall_seconds"]) for r in mine)
    else:
        pace = per_epoch * planned if per_epoch is not None else None
    left = len(todo) + sum(1 - min(e, planned) / planned for e in running.values())
    return {"row": row, "done": done, "running": running, "todo": todo, "epochs": planned,
            "hours_left": None if pace is None else left * pace / 3600, "estimated": not mine,
            "runs_left": left, "stale": stale}


def stale_teacher_seeds(bench: AccuracyBench, variant, recorded: list[dict]) -> list[int]:
    """Seeds of a row that distils from a teacher whose recorded runs name another teacher than the suite's
    current one (their top-1s SAME_TEACHER_POINTS or more apart): runs made before the teacher was retrained."""
    from kdforge.bench.report import SAME_TEACHER_POINTS

    if not recorded or not bench.uses_teacher(variant):
        return []
    teacher = bench.finished_teacher(variant)
    if teacher is None:
        return []
    return sorted(int(r["seed"]) for r in recorded
                  if r.get("teacher_top1") and abs(float(r["teacher_top1"]) - float(teacher["top1_last"])) >= SAME_TEACHER_POINTS)


def _hours(row: dict) -> str:
    if not row["runs_left"]:
        return "–"
    if row["hours_left"] is None:
        return "?"
    return ("~" if row["estimated"] else "") + f"{row['hours_left']:.1f}"


def _count(runs: float) -> str:
    """Runs left: whole when none is under way, else to a tenth (a run under way counts its untrained share)."""
    return f"{runs:.0f}" if float(runs).is_integer() else f"{runs:.1f}"


def status_table(status: list[dict]) -> str:
    lines = ["| row | recorded seeds | under way (epochs trained) | to run | lane-hours left |", "|---|---|---|---|---|"]
    for s in status:
        running = ", ".join(f"s{seed}: {e}/{s['epochs']}" for seed, e in s["running"].items()) or "–"
        hours = _hours(s)
        done = ", ".join(f"{seed} (older teacher)" if seed in s["stale"] else str(seed) for seed in s["done"])
        lines.append(f"| {s['row']} | {done or '–'} | {running} | "
                     f"{', '.join(map(str, s['todo'])) or '–'} | {hours} |")
    total = sum(s["hours_left"] for s in status if s["runs_left"] and s["hours_left"] is not None)
    runs = sum(s["runs_left"] for s in status)
    untimed = sum(s["runs_left"] for s in status if s["hours_left"] is None)
    if untimed and untimed == runs:  # nothing to time them by: no figure rather than "about 0.0"
        hours = "lane-hours unknown: the suite has no recorded run to time them by"
    else:
        hours = (f"about {total:.1f} lane-hours: each row at the pace of its recorded runs, ~ where it has none (the "
                 "median pace per epoch of its cell, else of the suite, scaled to the classes it trains on)"
                 + (f"; ? ({_count(untimed)} runs, not in the hours): no recorded run to time them by" if untimed else ""))
    lines.append(f"\n{_count(runs)} runs left, {hours}"
                 + ("; 'older teacher': a run that distilled from another teacher than the suite's current one "
                    "(`kdforge bench withdraw SUITE --older-teacher --reason ...` takes such runs out of the table "
                    "to re-run them)" if any(s["stale"] for s in status) else ""))
    return "\n".join(lines)


def campaign_status(seeds: int = 3, root: str | Path = "runs/bench", results: str | Path = "results") -> list[dict]:
    """Every suite with recorded runs, at the budget holding most of them (the schedule its rows run at), and the
    detection suite: runs recorded, runs left and lane-hours left, as `suite_status` counts them row by row."""
    picks, read = [], functools.cache(read_rows)  # suite_status reads the chosen budget's file again: once
    for name in SUITES.names():
        suite = SUITES.get(name)
        if suite.kind != "train":
            continue
        counts = {b: len(read(Path(results) / f"{results_stem(name, b)}.csv")) for b in suite.budgets}
        budget = max(counts, key=counts.get)
        if counts[budget]:
            picks.append((name, budget, counts[budget]))
    detection = len(read_csv(Path(results) / f"{DETECTION_SUITE}.csv"))
    picks += [(DETECTION_SUITE, "small", detection)] if detection else []
    entries = []
    for name, budget, recorded in picks:
        rows = suite_status(name, budget, seeds, None, root, results, read)
        timed = [r for r in rows if r["runs_left"] and r["hours_left"] is not None]
        entries.append({"suite": name, "budget": budget, "recorded": recorded,
                        "runs_left": sum(r["runs_left"] for r in rows),
                        "hours_left": sum(r["hours_left"] for r in timed),
                        "estimated": any(r["estimated"] for r in timed)})
    return entries


def campaign_table(entries: list[dict]) -> str:
    lines = ["| suite | budget | runs recorded | runs left | lane-hours left |", "|---|---|---|---|---|"]
    for e in entries:
        hours = "–" if not e["runs_left"] else ("~" if e["estimated"] else "") + f"{e['hours_left']:.1f}"
        lines.append(f"| {e['suite']} | {e['budget']} | {e['recorded']} | {_count(e['runs_left'])} | {hours} |")
    total = sum(e["hours_left"] for e in entries)
    lines.append(f"\n{_count(sum(e['runs_left'] for e in entries))} runs left, about {total:.1f} lane-hours "
                 "(~: some rows timed at the pace of other rows; `kdforge bench status SUITE --budget B` row by row)")
    return "\n".join(lines)
