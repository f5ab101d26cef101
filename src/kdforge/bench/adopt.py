"""`kdforge bench adopt SOURCE TARGET`: a row of one suite that trains exactly what a row of another suite trains
(the same teacher recipe, the same student recipe, method and arguments) need not be trained twice. Its recorded
runs are copied into the other suite's CSV under that suite's row name; rows whose recipes differ in anything
but the run folder are never matched."""

from __future__ import annotations

import json
from pathlib import Path

from kdforge.bench.accuracy import AccuracyBench, append_row, read_rows
from kdforge.bench.suites import SUITES, Variant
from kdforge.config import trained_settings


def _recipe(bench: AccuracyBench, variant: Variant) -> str:
    """What a row trains, seed aside: its teacher's and its student's settings without run-folder keys."""
    preset, *overrides = bench.suite.teacher
    from kdforge.config import load_config

    extra = list(bench.suite.budgets[bench.budget][0]) + list(variant.teacher)
    teacher = load_config(preset, overrides + extra)
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
        if new:
            adopted.append(variant.name)
            echo(f"{target}/{variant.name}: {len(new)} run(s) of {source}/{match} (the same recipe)")
    write_report(dst.suite, dst.stem, results, dst.root / dst.stem)
    return adopted
