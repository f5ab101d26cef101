"""KR's two claims, read off a suite whose cells are students of falling capacity (`Suite.capacity_ladder`, most
capable first): knowledge representing helps *less capable* students most, and makes them converge faster.

- The gain of a method over its baseline in each student, and the gain in the least capable student minus the gain
  in the most capable one. Both are paired by seed: a seed fixes the data order in every student, and the
  training subset is the suite's. The interval is a t 95 % interval over the seeds that all four rows share.
- The epochs a method needs to reach 90 % of its final test top-1, minus the baseline's, in each student (fewer:
  sooner). The epochs are counted at the runs' evaluation points, so the suite's `eval_every` is the resolution.
- The mean test top-1 over the evaluations in the first half of the schedule, minus the baseline's (higher:
  sooner). Where evaluations are sparse (every 24 of 240 epochs in the paper regime) the epochs to 90 % can only
  differ by whole evaluation intervals, while this mean moves with every evaluation; it is read off the runs'
  kept curves (results/STEM.curves.jsonl), so rows recorded before curves were kept have none.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict

from kdforge.bench.report import Difference, difference_of, format_difference

# (method, the baseline its claim is made against)
CAPACITY_CLAIMS = (("kr", "ce"), ("kr_kd", "kd"))


def seed_gains(rows: list[dict], method: str, reference: str, column: str) -> dict[int, float]:
    """method − reference per seed, over the seeds where both recorded `column` (older runs may lack it)."""
    values = {(r["method"], int(r["seed"])): float(r[column]) for r in rows if r.get(column) not in ("", None)}
    return {s: v - values[(reference, s)] for (m, s), v in values.items() if m == method and (reference, s) in values}


def _word(d: Difference, above: str, below: str, level: str) -> str:
    if d.low is None:
        return "one seed: no verdict"
    return f"**{above}**" if d.low > 0 else f"**{below}**" if d.high < 0 else level


def _gain_spread(low: dict[int, float], high: dict[int, float], least: str, most: str) -> str:
    """The least capable student's per-seed gains (`low`) minus the most capable one's (`high`), paired by seed."""
    seeds = sorted(set(low) & set(high))
    if not seeds:
        return ""
    d = difference_of([low[s] - high[s] for s in seeds])
    word = _word(d, "grows", "shrinks", "does not change measurably")
    return (f"; {least}'s gain − {most}'s: {format_difference(d)} (n={d.n}): as capacity falls the gain {word}"
            if d.low is not None else f"; {least}'s gain − {most}'s: {d.mean:+.2f} (one seed: no verdict)")


def cell_gain(rows: list[dict], cell: str, method: str, reference: str, column: str) -> Difference | None:
    """The paired difference `cell/method` − `cell/reference` in `column` (None: no seed has both)."""
    gains = seed_gains(rows, f"{cell}/{method}", f"{cell}/{reference}", column)
    return difference_of(list(gains.values())) if gains else None


def capacity_lines(rows: list[dict], ladder: tuple[str, ...], claims: tuple = CAPACITY_CLAIMS) -> list[str]:
    """The claims' lines for a suite whose rows are `student/method`, `ladder` naming the students from the most
    capable to the least; empty where no claim's rows have run."""
    lines = []
    for method, reference in claims:
        gains = {c: g for c in ladder if (g := seed_gains(rows, f"{c}/{method}", f"{c}/{reference}", "top1_last"))}
        if gains:
            cells = list(gains)
            spread = _gain_spread(gains[cells[-1]], gains[cells[0]], cells[-1], cells[0]) if len(cells) > 1 else ""
            per_cell = ", ".join(f"{c} {format_difference(difference_of(list(g.values())))}" for c, g in gains.items())
            lines.append(f"- top-1, `{method}` − `{reference}`: {per_cell}{spread}")
    # convergence: (column, what it is, how a difference reads, the words for above and below zero)
    for column, label, shown, words in (("epoch_to_90", "epochs to 90 % of the final top-1", _epochs, ("later", "sooner")),
                                        ("top1_first_half", "mean test top-1 over the first half of the schedule",
                                         _points, ("sooner", "later"))):
        for method, reference in claims:
            found = {c: d for c in ladder if (d := cell_gain(rows, c, method, reference, column))}
            if found:
                per_cell = ", ".join(f"{c} {shown(d)} ({_word(d, *words, 'ties')})" for c, d in found.items())
                lines.append(f"- {label}, `{method}` − `{reference}`: {per_cell}")
    return lines


def first_half_top1(records: list[dict], epochs: int) -> float | None:
    """The mean test top-1 of a run's evaluations in the first half of its `epochs` (None: it has none there)."""
    early = [float(r["test_top1"]) for r in records if "test_top1" in r and 0 < r.get("epoch", 0) <= epochs / 2]
    return sum(early) / len(early) if early else None


def with_first_half(rows: list[dict], curve_of) -> list[dict]:
    """The rows with `top1_first_half` added from their curves; `curve_of(method, seed, final)` gives a run's
    evaluation records (None where its curve was not kept: the value is then empty)."""
    out = []
    for r in rows:
        curve = curve_of(r["method"], int(r["seed"]), r["top1_last"])
        value = first_half_top1(curve, int(r["epochs"])) if curve and r.get("epochs") else None
        out.append({**r, "top1_first_half": "" if value is None else f"{value:.4f}"})
    return out


def kept_curves(results, stem: str):
    """`curve_of` for `with_first_half`: the curves kept in results/STEM.curves.jsonl, read once."""
    from kdforge.bench.curves import curves_path, same_final
    from kdforge.fileio import read_records

    @functools.cache
    def kept() -> dict[tuple[str, int], list[dict]]:  # read at the first call: a suite without a ladder never does
        by_run = defaultdict(list)
        for line in read_records(curves_path(results, stem)):
            record = json.loads(line)
            by_run[(record["method"], record["seed"])].append(record)
        return by_run

    def curve_of(method: str, seed: int, final) -> list[dict] | None:
        found = [k["records"] for k in kept().get((method, seed), []) if same_final(k["final"], final)]
        return found[-1] if found else None
    return curve_of


def _points(d: Difference) -> str:
    return f"{d.mean:+.2f}" if d.low is None else f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def _epochs(d: Difference) -> str:
    return f"{d.mean:+.0f}" if d.low is None else f"{d.mean:+.0f} [{d.low:+.0f}, {d.high:+.0f}]"


def capacity_section(suite, rows: list[dict], curve_of=None) -> list[str]:
    """The lines a suite's table and the results page add under it: none for a suite without a capacity ladder
    (`curve_of`: the runs' curves, for the first-half means; see `with_first_half`)."""
    lines = suite_capacity_lines(suite, rows, curve_of)
    if not lines:
        return []
    return [f"KR's claims by student capacity ({' → '.join(suite.capacity_ladder)}, most capable first; paired by "
            "seed, 95 % intervals, last epoch; epochs counted at the runs' evaluation points; first-half means from the "
            "runs' kept curves, so only rows recorded since curves were kept have them):", "", *lines]


def suite_capacity_lines(suite, rows: list[dict], curve_of=None) -> list[str]:
    """A suite's claim lines (`capacity_lines` on its ladder, the first-half means included where `curve_of` gives
    the runs' curves); none for a suite without a capacity ladder."""
    if not suite.capacity_ladder:
        return []
    return capacity_lines(with_first_half(rows, curve_of) if curve_of else rows, suite.capacity_ladder)


def capacity_after_table(suite, rows: list[dict], curve_of=None) -> list[str]:
    """The capacity section as a suite table's page and the results page put it right under the table: after a
    blank line; nothing for a suite without a capacity ladder."""
    claims = capacity_section(suite, rows, curve_of)
    return ["", *claims] if claims else []
