"""`kdforge bench regime SUITE`: choose a suite's student schedule from its `ce` and `kd` runs alone, by criteria
fixed before any other method runs in it (the paper-regime suite's), read on the validation split by default (a
suite setting is chosen like a hyper-parameter: never on the test split, which is shown beside):

- converged: `ce` at the schedule is within `tolerance` points of `ce` at twice the schedule (mean of >= 2 seeds);
- KD helps: `kd` - `ce` at the schedule has a paired 95 % interval above zero;
- affordable: the slowest `ce` / `kd` run at the schedule took at most `max_minutes`.

The shortest schedule that meets all three is chosen. Every budget's figures are written, chosen or not, to
results/SUITE-regime.md; the runs themselves come from `kdforge bench accuracy SUITE --budget eN --methods ce,kd`.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from kdforge.bench.accuracy import results_stem, run_folder, with_summary_values
from kdforge.bench.report import format_difference, paired_difference, read_csv
from kdforge.bench.suites import SUITES
from kdforge.errors import ConfigError
from kdforge.fileio import atomic_write_text


def _epochs(budget: str) -> int:
    if not (budget.startswith("e") and budget[1:].isdigit()):
        raise ConfigError(f"budget {budget!r} is not a schedule length (eN)")
    return int(budget[1:])


def _mean(rows: list[dict], method: str, column: str = "top1_last") -> tuple[float | None, int]:
    values = [float(r[column]) for r in rows if r["method"] == method and r.get(column)]
    return (statistics.fmean(values) if values else None), len(values)


# the split a choice is read on -> (the suite CSV's column, its name on the page)
SPLITS = {"val": ("val_top1", "validation split"), "test": ("top1_last", "test split")}


def _split_figures(rows: list[dict], doubled: list[dict], column: str) -> dict:
    """ce at N and at 2N, and kd - ce at N (paired over seeds), on one split's column."""
    ce, n_ce = _mean(rows, "ce", column)
    ce2, n_ce2 = _mean(doubled, "ce", column)
    gain = paired_difference([r for r in rows if r.get(column)], "kd", "ce", column)
    return {"ce": ce, "n_ce": n_ce, "ce_double": ce2, "n_ce_double": n_ce2, "kd_minus_ce": gain}


def _validation_rows(rows: list[dict], runs: Path, val_per_class: int | None) -> list[dict]:
    """The rows' validation top-1: the run's own split (the CSV, or its summary for older rows), or with
    `val_per_class` its final weights on a split of that many images per class (kdforge.bench.revalidate)."""
    if not val_per_class:
        return with_summary_values(rows, runs, "val_top1", "val_top1_last")
    from tqdm import tqdm

    from kdforge.bench.revalidate import validation_top1

    out = []
    for r in tqdm(rows, desc=f"validation top-1, {val_per_class} per class", leave=False,
                  disable=not rows or not sys.stderr.isatty()):
        folder = run_folder(runs, r["method"], r["seed"])
        out.append({**r, "val_top1": f"{validation_top1(folder, val_per_class):.4f}" if folder.is_dir() else ""})
    return out


def assess(suite: str, results: Path, tolerance: float = 0.5, max_minutes: float = 20.0, split: str = "val",
           runs: Path = Path("runs/bench"), val_per_class: int | None = None) -> tuple[list[dict], str | None]:
    """One record per budget with runs, and the chosen budget (None when none meets every criterion). Converged
    and KD-helps are read on `split`; the validation figures are each run's own split's, or with `val_per_class`
    its final weights' on a larger split drawn by the same rule."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    budgets = sorted((b for b in SUITES.get(suite).budgets if b.startswith("e")), key=_epochs)
    data = {b: _validation_rows(read_csv(results / f"{results_stem(suite, b)}.csv"), runs / results_stem(suite, b),
                                val_per_class) for b in budgets}
    records, chosen = [], None
    for budget in budgets:
        rows = data[budget]
        if not rows:
            continue
        doubled = data.get(f"e{2 * _epochs(budget)}", [])
        by_split = {name: _split_figures(rows, doubled, column) for name, (column, _) in SPLITS.items()}
        deciding = by_split[split]
        ce, n_ce, ce2, n_ce2 = (deciding[k] for k in ("ce", "n_ce", "ce_double", "n_ce_double"))
        gain = deciding["kd_minus_ce"]
        # affordable: measured by runs that had the machine (2 threads) with the teacher-output cache warm (ce, or
        # kd replaying every epoch's teacher outputs: what every later method of a seed costs); the first teacher
        # run of a seed (it computes the cache) and 1-thread lane runs beside another job are shown, not deciding
        ce_kd = [r for r in rows if r["method"] in ("ce", "kd")]
        whole = [_minutes(r) for r in ce_kd if _threads(r) >= 2 and (r["method"] == "ce" or _warm(r))]
        cold = [_minutes(r) for r in ce_kd if _threads(r) >= 2 and r["method"] == "kd" and not _warm(r)]
        lanes = [_minutes(r) for r in ce_kd if _threads(r) < 2]
        slowest = max(whole) if whole else None
        converged = None if ce is None or ce2 is None or min(n_ce, n_ce2) < 2 else ce2 - ce <= tolerance
        helps = None if gain is None or gain.low is None else gain.low > 0
        affordable = None if slowest is None else slowest <= max_minutes
        record = {"budget": budget, **deciding, "split": split, "by_split": by_split, "slowest_minutes": slowest,
                  "slowest_lane_minutes": max(lanes) if lanes else None,
                  "cold_kd_minutes": max(cold) if cold else None, "ce_train_top1": _mean(rows, "ce", "train_top1")[0],
                  "converged": converged, "kd_helps": helps, "affordable": affordable}
        records.append(record)
        if chosen is None and converged and helps and affordable:
            chosen = budget
    return records, chosen


def _minutes(row: dict) -> float:
    return float(row["wall_seconds"]) / 60


def _warm(row: dict) -> bool:
    return row.get("teacher_epochs_computed") == "0"


def _threads(row: dict) -> int:
    """A row's thread count; rows recorded before the column existed ran as 1-thread lanes."""
    return int(row.get("threads") or 1)


def _mark(flag: bool | None) -> str:
    return {True: "yes", False: "no", None: "not measured"}[flag]


def write_regime(suite: str, results: Path = Path("results"), tolerance: float = 0.5, max_minutes: float = 20.0,
                 split: str = "val", runs: Path = Path("runs/bench"), val_per_class: int | None = None) -> Path:
    records, chosen = assess(suite, results, tolerance, max_minutes, split, runs, val_per_class)
    if not records:
        raise ConfigError(f"no runs of {suite} yet: run `kdforge bench accuracy {suite} --budget eN --methods ce,kd` "
                          "for the candidate budgets first")

    def num(x, fmt=".2f"):
        return "–" if x is None else format(x, fmt)

    other = next(name for name in SPLITS if name != split)
    sized = f" --val-per-class {val_per_class}" if val_per_class else ""
    where = (f" ({val_per_class} images per class outside the training subset, the runs' final weights)"
             if val_per_class else " (each run's own, as it trained)")
    lines = [f"# {suite}: choosing the student's schedule from ce and kd", "",
             f"Generated by `kdforge bench regime {suite} --split {split}{sized}` from the `{suite}-eN.csv` files "
             f"and the runs' final weights. Criteria, fixed before any other method ran, read on the "
             f"**{SPLITS[split][1]}**{where}: converged (`ce` at N within "
             f"{tolerance} points of `ce` at 2N, means of 2 or more seeds), KD helps (`kd` − `ce` at N, paired 95 % "
             f"interval above zero), affordable (the slowest `ce` / `kd` run at N that had the 2-core machine to "
             f"itself, 2 threads, with the teacher-output cache warm, within {max_minutes:g} minutes; a seed's first "
             "teacher run, which computes the cache every later method of the seed replays, and runs in 1-thread "
             "lanes beside another job are shown but do not decide it). The shortest schedule meeting all three is "
             "chosen.", "",
             "| budget | ce (n) | ce at 2N (n) | converged | kd − ce [95 % CI] | KD helps | slowest run, 2 threads, "
             "warm cache (min) | affordable | kd computing the cache, 2 threads (min) | slowest 1-thread lane run "
             "(min) | ce train top-1 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['budget']} | {num(r['ce'])} ({r['n_ce']}) | {num(r['ce_double'])} ({r['n_ce_double']}) | "
                     f"{_mark(r['converged'])} | {format_difference(r['kd_minus_ce'])} | {_mark(r['kd_helps'])} | "
                     f"{num(r['slowest_minutes'], '.1f')} | {_mark(r['affordable'])} | {num(r['cold_kd_minutes'], '.1f')} | "
                     f"{num(r['slowest_lane_minutes'], '.1f')} | "
                     f"{num(r['ce_train_top1'])} |")
    lines += ["", f"Chosen: **{chosen}**." if chosen else "Chosen: none yet (no budget meets every criterion).", "",
              f"The same runs on the {SPLITS[other][1]} (shown, not deciding):", "",
              "| budget | ce (n) | ce at 2N (n) | ce 2N − N | kd − ce [95 % CI] |", "|---|---|---|---|---|"]
    for r in records:
        o = r["by_split"][other]
        step = None if o["ce"] is None or o["ce_double"] is None else o["ce_double"] - o["ce"]
        lines.append(f"| {r['budget']} | {num(o['ce'])} ({o['n_ce']}) | {num(o['ce_double'])} ({o['n_ce_double']}) | "
                     f"{num(step, '+.2f')} | {format_difference(o['kd_minus_ce'])} |")
    path = results / f"{suite}-regime.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
