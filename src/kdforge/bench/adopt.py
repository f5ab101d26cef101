"""`kdforge bench adopt SOURCE TARGET`: a row of one suite that trains exactly what a row of another suite trains
(the same teacher recipe, the same student recipe, method and arguments) need not be trained twice. Its recorded
runs are copied into the other suite's CSV under that suite's row name; rows whose recipes differ in anything
but the run folder are never matched. SOURCE may also be a folder of finished runs (a sweep's): a run whose
recorded settings are exactly those of a TARGET row at the run's seed (teacher included) is that row's run, since
training is deterministic for a given config and seed; it is copied into the suite's runs and recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kdforge.bench.accuracy import AccuracyBench, append_row, read_rows, run_folder
from kdforge.bench.curves import evals_of, keep_curve, row_curve, same_final
from kdforge.bench.suites import SUITES, Variant
from kdforge.config import MEASURED_PRECISION, settings_differences, trained_settings
from kdforge.errors import UserError


def _recipe(bench: AccuracyBench, variant: Variant) -> str:
    """What a row trains, seed aside: its teacher's and its student's settings without run-folder keys."""
    preset, *overrides = bench.suite.teacher
    from kdforge.config import load_config

    extra = list(bench.suite.budgets[bench.budget][0]) + list(variant.teacher)
    teacher = load_config(preset, [*MEASURED_PRECISION, *overrides, *extra])
    student, _ = bench.student_config(variant, 0, Path("teacher"))

    def settings(cfg) -> dict:
        return {k: v for k, v in trained_settings(cfg).items() if k != "teacher_checkpoint"}

    return json.dumps({"teacher": settings(teacher), "student": settings(student)}, sort_keys=True)


def adopt_rows(source: str, target: str, results: str | Path = "results", echo=print, budget: str = "small") -> list[str]:
    """Copy SOURCE's runs of every row whose recipe equals a TARGET row's into TARGET.csv (seeds it lacks), both
    suites at `budget`; returns the adopted target rows and regenerates TARGET's report."""
    from kdforge.bench.report import write_report

    results = Path(results)
    src = AccuracyBench(SUITES.get(source), budget, results=results)
    dst = AccuracyBench(SUITES.get(target), budget, results=results)
    by_recipe = {_recipe(src, v): v.name for v in src.variants(None)}
    runs = read_rows(src.csv)
    adopted = []
    for variant in dst.variants(None):
        match = by_recipe.get(_recipe(dst, variant))
        if match is None:
            continue
        have = {int(r["seed"]) for r in read_rows(dst.csv) if r["method"] == variant.name}
        new = [r for r in runs if r["method"] == match and int(r["seed"]) not in have]
        for row in sorted(new, key=lambda r: int(r["seed"])):
            append_row(dst.csv, {**row, "method": variant.name})
            seed = int(row["seed"])  # its curve too, from the source's run folder or the source's kept curves
            evals = row_curve(results, src.stem, run_folder(src.root / src.stem, match, seed), match, seed,
                              row["top1_last"])
            keep_curve(results, dst.stem, variant.name, seed, row["top1_last"], evals or [])
        if new:
            adopted.append(variant.name)
            echo(f"{target}/{variant.name}: {len(new)} run(s) of {source}/{match} (the same recipe)")
    write_report(dst.suite, dst.stem, results, dst.root / dst.stem)
    return adopted


def _finished_runs(source: Path) -> list[tuple[str, dict, object, object]]:
    """(where, recorded config, a function that puts the run into a folder, one that reads its final top-1 and
    evaluation records) per finished run of `source`: a folder of run folders (copied whole), or a sweep's ledger
    (results/sweeps/NAME.runs.jsonl: the run's summary and evaluation curve are written, its weights were on the
    machine that trained it)."""
    from kdforge.fileio import append_line, atomic_write_json
    from kdforge.sweep import Ledger

    def write(record: dict):
        def put(dest: Path):
            dest.mkdir(parents=True)
            for line in record.get("evals", []):
                append_line(dest / "metrics.jsonl", json.dumps(line))
            atomic_write_json(dest / "summary.json", record["summary"])
        return put

    def summary(run: Path) -> dict:
        return json.loads((run / "summary.json").read_text())

    if str(source).endswith(".runs.jsonl"):
        return [(f"{source} (seed {r['seed']})", r["config"], write(r),
                 lambda r=r: (r["summary"]["top1_last"], r.get("evals", [])))
                for r in Ledger(source).records() if "summary" in r]
    return [(str(run), summary(run)["config"], lambda dest, run=run: shutil.copytree(run, dest),
             lambda run=run: (summary(run)["top1_last"], evals_of(run)))
            for run in sorted(p.parent for p in Path(source).glob("*/summary.json"))]


def adopt_runs(source: Path, target: str, budget: str = "small", results: str | Path = "results",
               root: str | Path = "runs/bench", echo=print) -> list[str]:
    """Put each finished run of `source` (a folder of runs, or a sweep's ledger) whose recorded settings are a
    TARGET row's at its seed into that row's run folder and record it (the suite's own recording path: the same CSV
    row a trained run gets); returns the adopted 'row seed N'. Rows already recorded, and run folders already in
    place, are left as they are."""
    bench = AccuracyBench(SUITES.get(target), budget, Path(root), Path(results), echo=lambda m: None)
    _, teacher = bench.teacher_config()
    runs = _finished_runs(Path(source))
    if not runs:
        raise UserError(f"{source} holds no finished run (no */summary.json, no ledger record); pass a sweep's "
                        "folder, its ledger (results/sweeps/NAME.runs.jsonl) or a suite name")
    recorded = {(r["method"], int(r["seed"])): r["top1_last"] for r in read_rows(bench.csv)}  # row, seed -> top-1
    adopted = []
    for where, config, put, curve in runs:
        for variant in bench.variants(None):
            cfg, dest = bench.student_config(variant, config["seed"], teacher)
            if settings_differences(config, cfg):
                continue
            if (variant.name, config["seed"]) in recorded:  # perhaps recorded before curves were kept: if this
                top1, records = curve()  # very run (the same end), its curve now
                if same_final(top1, recorded[variant.name, config["seed"]]):
                    keep_curve(bench.results, bench.stem, variant.name, config["seed"], top1, records)
                continue
            if dest.exists():
                continue
            put(dest)
            bench.run(config["seed"] + 1, [variant.name], [config["seed"]])
            adopted.append(f"{variant.name} seed {config['seed']}")
            echo(f"{target}/{variant.name} seed {config['seed']}: the run in {where} (the same settings)")
            break
    return adopted
