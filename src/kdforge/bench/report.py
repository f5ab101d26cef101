"""Results of an accuracy suite: mean ± std of last and best top-1 per method, the difference to `kd` and to
`ce` with a 95 % interval, a bar chart with error bars and accuracy-vs-epoch curves; and the published
numbers beside kdforge's (`kdforge bench compare`)."""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kdforge.bench.suites import cell_of, method_of
from kdforge.fileio import atomic_write_text

# two-sided 95 % Student-t critical values, by degrees of freedom
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t_critical(df: int) -> float:
    if df in T975:
        return T975[df]
    below = max(k for k in T975 if k <= df)
    return T975[below] if df < 30 else 1.96


@dataclass
class MethodStats:
    method: str
    n: int
    last_mean: float
    last_std: float
    best_mean: float
    best_std: float
    epochs: str = ""  # epochs trained (every stage of a staged method): says which budget a row used
    train_top1: float | None = None  # mean final top-1 on the un-augmented training images (runs that record it)


@dataclass
class Difference:
    mean: float
    low: float | None  # 95 % interval; None when fewer than 2 paired seeds
    high: float | None
    n: int


def _float(value: str) -> float | None:
    return float(value) if value not in ("", None) else None


def method_stats(rows: list[dict]) -> list[MethodStats]:
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    out = []
    for method, runs in by_method.items():
        last = [float(r["top1_last"]) for r in runs]
        best = [float(r["top1_best"]) for r in runs]
        epochs = "/".join(sorted({r.get("epochs") or "?" for r in runs}))
        fit = [float(r["train_top1"]) for r in runs if r.get("train_top1")]
        out.append(MethodStats(method, len(runs), statistics.fmean(last), _std(last), statistics.fmean(best), _std(best),
                               epochs, statistics.fmean(fit) if fit else None))
    return out


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def paired_difference(rows: list[dict], method: str, reference: str, column: str = "top1_last") -> Difference | None:
    """Mean of (method - reference) over the seeds both have, with a paired-t 95 % interval. Seeds pair
    naturally: a seed fixes the student's initialisation and the data order for every method."""
    values = {(r["method"], int(r["seed"])): float(r[column]) for r in rows}
    seeds = sorted(s for (m, s) in values if m == method and (reference, s) in values)
    if not seeds or method == reference:
        return None
    return difference_of([values[(method, s)] - values[(reference, s)] for s in seeds])


def difference_of(diffs: list[float]) -> Difference:
    """Mean of paired differences with its t 95 % interval (none for a single pair)."""
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Difference(mean, None, None, 1)
    half = t_critical(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Difference(mean, mean - half, mean + half, len(diffs))


def format_difference(d: Difference | None) -> str:
    if d is None:
        return "–"
    if d.low is None:
        return f"{d.mean:+.2f} (n=1)"
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def verdict_line(row: str, reference: str, d: Difference, on: str = "") -> str:
    """`row` beats / ties / loses to `reference` by the paired 95 % interval of `d`; `on`: what was measured, where
    it is not the rows' own top-1."""
    if d.low is None:
        return f"- `{row}` vs `{reference}`{on}: {d.mean:+.2f} (one seed: no verdict)"
    word = "**beats**" if d.low > 0 else "**loses to**" if d.high < 0 else "ties"
    return f"- `{row}` {word} `{reference}`{on}: {format_difference(d)} (n={d.n})"


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _versus(rows: list[dict], method: str, reference: str, foreign: set[str], ce_cells: dict | None = None) -> str:
    """The difference to `reference` within the method's cell: rows named `cell/method` (a suite with several
    settings) compare with `cell/kd` and `cell/ce`, or with the `ce` of the cell `ce_cells` names for a cell
    without one of its own. In a cell whose teacher knows other classes, kd has no meaning, and the table says so."""
    cell = cell_of(method)
    if reference == "kd" and cell in foreign:
        return "no meaning (teacher's classes differ)"
    if reference == "ce":
        cell = (ce_cells or {}).get(cell, cell)
    return format_difference(paired_difference(rows, method, f"{cell}/{reference}" if cell else reference))


def markdown_table(rows: list[dict], foreign_teacher_cells: set[str] = frozenset(),
                   ce_cells: dict | None = None, own_teacher_rows: set[str] = frozenset()) -> list[str]:
    speed = any(r.get("epoch_to_90") for r in rows)  # the convergence column, where runs recorded it
    lines = ["| method | n | epochs | top-1 last (mean ± std) | top-1 best (mean ± std) | train top-1 | last − kd [95 % CI] | "
             "last − ce [95 % CI] |" + (" epoch to 90 % of final |" if speed else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if speed else "")]
    # rows of one cell together (cell order as first seen), best first within a cell
    cells = list(dict.fromkeys(cell_of(r["method"]) for r in rows))
    ordered = sorted(method_stats(rows), key=lambda s: (cells.index(cell_of(s.method)), -s.last_mean))
    for s in ordered:
        spread = (lambda sd: f" ± {sd:.2f}") if s.n > 1 else (lambda sd: "")  # one run has no spread
        fit = f"{s.train_top1:.2f}" if s.train_top1 is not None else "–"
        lines.append(f"| {s.method} | {s.n} | {s.epochs} | {s.last_mean:.2f}{spread(s.last_std)} | {s.best_mean:.2f}"
                     f"{spread(s.best_std)} | {fit} | {_versus(rows, s.method, 'kd', foreign_teacher_cells)} | "
                     f"{_versus(rows, s.method, 'ce', foreign_teacher_cells, ce_cells)} |"
                     + (_speed(rows, s.method) if speed else ""))
    present = {cell_of(r["method"]) for r in rows}
    notes = [f"- Rows of cell `{cell}` compare with `{ref}/ce`: their students learn the classes `{ref}/ce`'s do."
             for cell, ref in (ce_cells or {}).items() if cell in present]
    notes += mixed_teacher_lines(rows, own_teacher_rows)  # under every table of a suite, the results page's included
    return lines + (["", *notes] if notes else [])


# two recorded teacher top-1s this close name one teacher (a BatchNorm-folded teacher evaluates within rounding
# of the unfolded one); further apart, two teachers (e.g. one retrained, at another thread count)
SAME_TEACHER_POINTS = 0.1


def mixed_teacher_lines(rows: list[dict], own_teacher_rows: set[str] = frozenset()) -> list[str]:
    """A warning per cell whose runs name different teachers (by the teacher's recorded top-1, within
    SAME_TEACHER_POINTS), e.g. runs recorded before the teacher was retrained. Empty when every cell is consistent.
    A row in `own_teacher_rows` (e.g. Tf-KD's self-teacher) distils from a teacher of its own by design: it is
    checked against itself alone."""
    seen: dict[tuple[str, str], dict[str, list[str]]] = {}  # ("cell" or "row", its name) -> teacher -> runs
    for r in rows:
        if r.get("teacher_top1"):
            own = r["method"] in own_teacher_rows
            group = ("row", r["method"]) if own else ("cell", cell_of(r["method"]))
            top1 = float(r["teacher_top1"])
            by = seen.setdefault(group, {})
            same = next((t for t in by if abs(float(t) - top1) < SAME_TEACHER_POINTS), f"{top1:.2f}")
            by.setdefault(same, []).append(f"{r['method']} s{r['seed']}")
    return [f"- **Mixed teachers{_where(group)}**: "
            + "; ".join(f"teacher top-1 {t}: {', '.join(runs)}" for t, runs in sorted(by.items()))
            + ". A difference between two rows that distil from different teachers compares students of different "
              "teachers (rows that use no teacher, such as ce, are unaffected): `kdforge bench withdraw SUITE "
              "--older-teacher` takes the older teacher's runs out of the table to re-run them."
            for group, by in seen.items() if len(by) > 1]


def _where(group: tuple[str, str]) -> str:
    kind, name = group
    return f" in {kind} `{name}`" if name else ""


def _speed(rows: list[dict], method: str) -> str:
    values = [int(r["epoch_to_90"]) for r in rows if r["method"] == method and r.get("epoch_to_90")]
    return f" {statistics.fmean(values):.1f} |" if values else " – |"


def write_report(suite, stem: str, results: Path, runs: Path) -> Path:
    """results/STEM.md (+ STEM.png bars and STEM-curves.png) from results/STEM.csv."""
    rows = read_csv(results / f"{stem}.csv")
    teacher = {f"{float(r['teacher_top1']):.2f}" for r in rows if r.get("teacher_top1")}
    lines = [f"# {stem}: {suite.description}", "",
             f"Generated by `kdforge bench accuracy {suite.name}` from `{stem}.csv` "
             f"({len(rows)} runs). Teacher top-1: {', '.join(sorted(teacher)) or '–'} %.", "",
             "Last = the final epoch; best = the best epoch *on the test split* (reported for comparison with "
             "tables that use it; it is an optimistic number). Differences are paired by seed; the interval is "
             "a paired-t 95 % interval (needs 2 or more seeds). `kd` has no meaning where the teacher's classes "
             "differ from the student's. Train top-1: the final student on its un-augmented training images (– where a "
             "run predates it). Epochs count every stage of a staged method (REFILLED: at the equal "
             "budget its two stages share the student's schedule; at the paper's budget each runs it whole).", ""]
    lines += markdown_table(rows, suite.foreign_teacher_cells(), suite.ce_cells, suite.own_teacher_rows())
    from kdforge.bench.capacity import capacity_after_table, kept_curves  # it reads this module's intervals
    from kdforge.bench.results_page import switch_block  # it reads this module's intervals too

    switched = switch_block(rows, suite.ce_cells)
    lines += ["", *switched] if switched else []

    lines += capacity_after_table(suite, rows, kept_curves(results, stem))
    plots, uncurved = _plots(rows, stem, results, runs)
    if plots:
        lines += ["", *[f"![{p.stem}]({p.name})" for p in plots]]
    if uncurved:
        lines += ["", f"Curves: seed 0 of {', '.join(uncurved)} was recorded before runs' curves were kept in "
                      f"`{stem}.curves.jsonl`, and its run folder is gone; `{stem}-curves.png` is the figure drawn from "
                      f"the run folders of its time, `{stem}-curves-kept.png` draws the kept curves."]
    path = results / f"{stem}.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _plots(rows: list[dict], stem: str, results: Path, runs: Path) -> tuple[list[Path], list[str]]:
    """The bar chart and the seed-0 curves; also the rows whose seed-0 curve is nowhere to be found."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], []
    if not rows:
        return [], []
    stats = sorted(method_stats(rows), key=lambda s: -s.last_mean)
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(stats) + 2), 4))
    xs = range(len(stats))
    ax.bar(xs, [s.last_mean for s in stats], yerr=[s.last_std for s in stats], capsize=3, color="tab:blue", alpha=0.8)
    ax.set_xticks(list(xs), [s.method for s in stats], rotation=45, ha="right")
    low = min(s.last_mean - s.last_std for s in stats)
    high = max(s.last_mean + s.last_std for s in stats)
    ax.set_ylim(max(0, low - 2), min(100, high + 1))
    ax.set_ylabel("test top-1, last epoch (%)")
    ax.set_title(f"{stem}: mean ± std over seeds")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    bars = results / f"{stem}.png"
    _save(fig, bars)
    plt.close(fig)
    out = [bars]
    curves, uncurved = _curves(stats, rows, runs, stem, results, plt)
    return out + curves, uncurved


def _curves(stats, rows: list[dict], runs: Path, stem: str, results: Path, plt) -> tuple[list[Path], list[str]]:
    """Test top-1 against epoch for each row's seed 0, from its run folder or, where that is gone, from the curve
    kept in the results when the run was recorded; returns the figures and the rows with no curve to draw.

    While some row has no curve (recorded before curves were kept, its folder gone), STEM-curves.png, drawn from the
    folders of the time, holds curves found nowhere else: it stays as it is, and the kept curves are drawn beside
    it in STEM-curves-kept.png until every row has one."""
    from kdforge.bench.curves import row_curve

    seed0 = {r["method"]: r["top1_last"] for r in rows if str(r["seed"]) == "0"}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn, missing = 0, []
    for s in stats:
        if s.method not in seed0:
            continue
        evals = [r for r in row_curve(results, stem, runs / f"{s.method}-s0", s.method, 0, seed0[s.method]) or []
                 if "test_top1" in r]
        if evals:
            ax.plot([r["epoch"] for r in evals], [r["test_top1"] for r in evals], marker=".", label=s.method)
            drawn += 1
        else:
            missing.append(s.method)
    complete, kept = results / f"{stem}-curves.png", results / f"{stem}-curves-kept.png"
    figures = [complete] if missing and complete.exists() else []
    if drawn:
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"{stem}: accuracy vs epoch (seed 0)" + (", kept curves" if missing else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        _save(fig, kept if missing else complete)
        figures.append(kept if missing else complete)
        if not missing:
            kept.unlink(missing_ok=True)
    plt.close(fig)
    return figures, missing


def _save(fig, path: Path) -> None:
    import io

    from kdforge.fileio import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())


# --- published numbers --------------------------------------------------------------------------------

def published() -> list[dict]:
    with resources.files("kdforge.bench").joinpath("published.csv").open(newline="") as f:
        return [r for r in csv.DictReader(f) if not r["suite"].startswith("#")]


def compare(suite: str, results: Path) -> str:
    """Published numbers beside kdforge's measurements of the same cells; last and best labelled apart."""
    refs = [r for r in published() if r["suite"] == suite]
    measured = {}
    for row in read_csv(results / f"{suite}.csv"):
        measured.setdefault(row["method"], []).append(row)
    if not refs:
        return (f"no published numbers for suite {suite!r} (published cells exist for: "
                f"{', '.join(sorted({r['suite'] for r in published()}))})")
    lines = [f"{'cell':<28} {'method':<9} {'published':>9} {'protocol':<24} {'kdforge last':>12} {'kdforge best':>12}"]
    for r in refs:
        runs = measured.get(f"{r['cell']}/{r['method']}", [])
        last = f"{statistics.fmean(float(x['top1_last']) for x in runs):.2f}" if runs else ""
        best = f"{statistics.fmean(float(x['top1_best']) for x in runs):.2f}" if runs else ""
        lines.append(f"{r['cell']:<28} {r['method']:<9} {float(r['top1']):>9.2f} {r['protocol']:<24} {last:>12} {best:>12}")
    lines.append("published: " + "; ".join(sorted({f"{r['protocol']} = {r['source']}" for r in refs})))
    return "\n".join(lines)


# --- before / after -----------------------------------------------------------------------------------

def before_after(suites: list[str], before: Path, after: Path, rows: list[str]) -> str:
    """A markdown table of the rows named in `rows` (a row matches when its method part, after any `cell/`,
    is one of them) as recorded in `before/SUITE.csv` and in `after/SUITE.csv`: mean ± std, seeds, epochs
    and the paired difference to `ce` of the same cell and file."""
    from kdforge.bench.suites import SUITES

    lines = ["| suite | row | before: top-1 (n, epochs) | before − ce [95 % CI] | after: top-1 (n, epochs) | "
             "after − ce [95 % CI] |", "|---|---|---|---|---|---|"]
    for suite in suites:
        foreign, ce_cells = SUITES.get(suite).foreign_teacher_cells(), SUITES.get(suite).ce_cells
        old, new = read_csv(before / f"{suite}.csv"), read_csv(after / f"{suite}.csv")
        names = dict.fromkeys(r["method"] for r in old + new if method_of(r["method"]) in rows)
        for name in names:
            cells = []
            for data in (old, new):
                stats = next((s for s in method_stats(data) if s.method == name), None)
                if stats is None:
                    cells += ["not run", "–"]
                    continue
                spread = f" ± {stats.last_std:.2f}" if stats.n > 1 else ""
                cells += [f"{stats.last_mean:.2f}{spread} ({stats.n}, {stats.epochs})",
                          _versus(data, name, "ce", foreign, ce_cells)]
            lines.append(f"| {suite} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
