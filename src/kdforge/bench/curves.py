"""Each recorded suite run's evaluation curve, kept in the results beside its table (results/STEM.curves.jsonl, a
line a run), so that a table's accuracy-vs-epoch plot outlives the run folders: a new machine holds none of them.
A kept curve is matched to a table row by method, seed and final top-1, so a withdrawn and re-trained run never
draws its predecessor's curve."""

from __future__ import annotations

import json
from pathlib import Path

from kdforge.fileio import append_line, read_records


def curves_path(results: Path, stem: str) -> Path:
    return Path(results) / f"{stem}.curves.jsonl"


def evals_of(folder: Path) -> list[dict]:
    """A run folder's evaluation records (a staged run's are its last stage's), oldest first."""
    from kdforge.plots import metrics_folder

    metrics = metrics_folder(Path(folder)) / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [r for r in map(json.loads, read_records(metrics)) if r.get("type") == "eval"]


def same_top1(a, b) -> bool:
    return round(float(a), 4) == round(float(b), 4)  # the tables keep four decimals


def recorded_curve(results: Path, stem: str, method: str, seed: int, top1_last) -> list[dict] | None:
    """The kept curve of the run (method, seed) that ended at `top1_last`; None when none was kept."""
    path = curves_path(results, stem)
    if not path.exists():
        return None
    found = None
    for record in map(json.loads, read_records(path)):
        if record["method"] == method and record["seed"] == seed and same_top1(record["top1_last"], top1_last):
            found = record["evals"]
    return found


def keep_curve(results: Path, stem: str, method: str, seed: int, top1_last, evals: list[dict]) -> None:
    """Keep a finished run's curve unless it is kept already (a run has one curve; nothing without evaluations)."""
    if evals and recorded_curve(results, stem, method, seed, top1_last) is None:
        append_line(curves_path(results, stem), json.dumps({"method": method, "seed": seed,
                                                            "top1_last": float(top1_last), "evals": evals}))


def row_curve(results: Path, stem: str, folder: Path, method: str, seed: int, top1_last) -> list[dict] | None:
    """A table row's curve: from its run folder when that still holds this very run (then kept, for a machine
    without the folder), else the kept one."""
    summary = Path(folder) / "summary.json"
    if summary.exists() and same_top1(json.loads(summary.read_text())["top1_last"], top1_last):
        evals = evals_of(folder)
        keep_curve(results, stem, method, seed, top1_last, evals)
        if evals:
            return evals
    return recorded_curve(results, stem, method, seed, top1_last)
