"""Each recorded suite run's curve, kept in the results beside its table (results/STEM.curves.jsonl, a line a run),
so that a table's by-epoch plots outlive the run folders: a new machine holds none of them. A kept curve is matched
to a table row by method, seed and final score (top-1, or AP), so a withdrawn and re-trained run never draws its
predecessor's curve. Classification suites keep the evaluation records; the detection suite also the epoch
records (its figure plots the losses)."""

from __future__ import annotations

import json
from pathlib import Path

from kdforge.fileio import append_line, read_records


def curves_path(results: Path, stem: str) -> Path:
    return Path(results) / f"{stem}.curves.jsonl"


def records_of(folder: Path, kinds: tuple[str, ...] = ("eval",)) -> list[dict]:
    """A run folder's metric records of these kinds (a staged run's are its last stage's), oldest first."""
    from kdforge.plots import metrics_folder

    metrics = metrics_folder(Path(folder)) / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [r for r in map(json.loads, read_records(metrics)) if r.get("type") in kinds]


def evals_of(folder: Path) -> list[dict]:
    return records_of(folder, ("eval",))


def same_final(a, b) -> bool:
    return round(float(a), 4) == round(float(b), 4)  # the tables keep four decimals


def recorded_curve(results: Path, stem: str, method: str, seed: int, final) -> list[dict] | None:
    """The kept curve of the run (method, seed) that ended at `final`; None when none was kept."""
    path = curves_path(results, stem)
    if not path.exists():
        return None
    found = None
    for record in map(json.loads, read_records(path)):
        if record["method"] == method and record["seed"] == seed and same_final(record["final"], final):
            found = record["records"]
    return found


def keep_curve(results: Path, stem: str, method: str, seed: int, final, records: list[dict]) -> None:
    """Keep a finished run's curve unless it is kept already (a run has one curve; nothing without records)."""
    if records and recorded_curve(results, stem, method, seed, final) is None:
        append_line(curves_path(results, stem), json.dumps({"method": method, "seed": seed, "final": float(final),
                                                            "records": records}))


def row_curve(results: Path, stem: str, folder: Path, method: str, seed: int, final, score: str = "top1_last",
              kinds: tuple[str, ...] = ("eval",)) -> list[dict] | None:
    """A table row's curve: from its run folder when that still holds this very run (its summary's `score` is the
    row's `final`; the curve is then kept, for a machine without the folder), else the kept one."""
    summary = Path(folder) / "summary.json"
    if summary.exists() and same_final(json.loads(summary.read_text())[score], final):
        records = records_of(folder, kinds)
        keep_curve(results, stem, method, seed, final, records)
        if records:
            return records
    return recorded_curve(results, stem, method, seed, final)
