"""`kdforge bench withdraw SUITE`: take recorded runs out of a suite's table so that `kdforge bench accuracy` trains
them again: rows whose settings changed, or runs that distilled from a teacher the suite no longer has. Nothing is
deleted: each withdrawn CSV line goes to RESULTS/withdrawn/STEM.csv with the reason, each run folder to
ROOT/withdrawn/STEM/, where a before / after comparison can still read them."""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path

from kdforge.bench.accuracy import AccuracyBench, locked, read_rows, run_folder, write_rows
from kdforge.bench.suites import SUITES
from kdforge.errors import UserError
from kdforge.fileio import append_line


def _line(row: dict, columns: list[str]) -> str:
    """One CSV record of the withdrawn-runs file (quoted where needed: a reason may hold commas)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([row.get(c) or "" for c in columns])
    return out.getvalue()


def _chosen(bench: AccuracyBench, recorded: list[dict], rows: list[str] | None, seeds: list[int] | None,
            older_teacher: bool) -> list[dict]:
    from kdforge.bench.status import stale_teacher_seeds

    names = {v.name: v for v in bench.variants(None)}
    unknown = sorted(set(rows or ()) - set(names))
    if unknown:
        raise UserError(f"suite {bench.suite.name} has no row {', '.join(unknown)}; its rows: {', '.join(names)}")
    picked = [r for r in recorded if (rows is None or r["method"] in rows)
              and (seeds is None or int(r["seed"]) in seeds) and r["method"] in names]
    if older_teacher:
        stale = {name: set(stale_teacher_seeds(bench, names[name], [r for r in recorded if r["method"] == name]))
                 for name in {r["method"] for r in picked}}
        picked = [r for r in picked if int(r["seed"]) in stale[r["method"]]]
    return picked


def withdraw(suite: str, budget: str, reason: str, rows: list[str] | None = None, seeds: list[int] | None = None,
             older_teacher: bool = False, results: str | Path = "results", root: str | Path = "runs/bench",
             echo=print) -> list[str]:
    """Withdraw the recorded runs of `rows` (every row when None) at `seeds` (every seed when None), only those of an
    older teacher when `older_teacher`; returns 'row seed N' for each. The run folders move before the live CSV is
    rewritten: a row whose folder were left in place would be recorded again from its old summary."""
    if rows is None and seeds is None and not older_teacher:
        raise UserError("name what to withdraw: --rows, --seeds or --older-teacher (a whole suite is never taken out "
                        "by default)")
    if not reason.strip():
        raise UserError("say why the runs are withdrawn: --reason TEXT (it is kept beside them)")
    bench = AccuracyBench(SUITES.get(suite), budget, Path(root), Path(results), echo=lambda m: None)
    picked = _chosen(bench, read_rows(bench.csv), rows, seeds, older_teacher)
    if not picked:
        echo(f"{bench.stem}: no recorded run matches; nothing withdrawn")
        return []
    keep = Path(results) / "withdrawn" / f"{bench.stem}.csv"
    keep.parent.mkdir(parents=True, exist_ok=True)
    columns = list(picked[0]) + ["withdrawn_because"]
    if not keep.exists():
        append_line(keep, _line({c: c for c in columns}, columns))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for r in picked:
        append_line(keep, _line({**r, "withdrawn_because": reason}, columns))
        folder = run_folder(bench.root / bench.stem, r["method"], r["seed"])
        if folder.exists():
            target = Path(root) / "withdrawn" / bench.stem / f"{folder.relative_to(bench.root / bench.stem)}-{stamp}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), str(target))
    gone = {(r["method"], r["seed"]) for r in picked}
    with locked(bench.csv):  # lanes append under the same lock: no line of theirs is lost by the rewrite
        write_rows(bench.csv, [r for r in read_rows(bench.csv) if (r["method"], r["seed"]) not in gone])
    bench.report()
    done = [f"{r['method']} seed {r['seed']}" for r in picked]
    echo(f"{bench.stem}: withdrew {len(done)} run(s) ({', '.join(done)}); kept in {keep}")
    return done
