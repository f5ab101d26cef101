"""The few-shot claim read where it is made: a student trained on the base classes is claimed to embed the *novel*
classes better, so its verdict is on novel-class episodes (`bench/refilled_protocols.py` writes them beside a
suite's table, as `<stem>-protocols.json`), not on the top-1 over the base classes its suite row records."""

from __future__ import annotations

import json
from pathlib import Path

from kdforge.bench.report import paired_difference, verdict_line
from kdforge.bench.suites import cell_of, method_of

EPISODE_CELL = "fewshot"
SHOTS = ("1-shot", "5-shot")
CE_STUDENT = "ce (no teacher)"  # the protocols file's name for its CE student (`fewshot/ce`, `same/ce`)


def protocols_command(suite: str, budget: str) -> str:
    return f".venv/bin/python bench/refilled_protocols.py --suite {suite} --budget {budget}"


def episode_rows(record: dict) -> list[dict]:
    """One row per (student, seed) of a protocols record, named as its suite row (`fewshot/refilled`), with each
    shot's mean episode accuracy as a column."""
    rows = []
    for student, per_seed in record.get("fewshot", {}).items():
        name = f"{EPISODE_CELL}/{'ce' if student == CE_STUDENT else student}"
        for seed, shots in per_seed.items():
            rows.append({"method": name, "seed": seed, **{shot: cell["mean"] for shot, cell in shots.items()}})
    return rows


def episode_verdicts(results: Path, stem: str, rows: list[dict], suite: str, budget: str,
                     baselines: tuple[str, ...] = ("ce",)) -> list[str]:
    """A verdict line per few-shot student with suite runs and per shot, against the cell's `baselines` on the
    novel classes' episodes; where the episodes have not been read from the runs yet, one line saying how to."""
    students = sorted({r["method"] for r in rows if cell_of(r["method"]) == EPISODE_CELL
                       and method_of(r["method"]) != "ce"})
    if not students:
        return []
    where = results / f"{stem}-protocols.json"
    if not where.exists():
        return [f"- {', '.join(f'`{s}`' for s in students)}: novel-class episodes not read yet "
                f"(`{protocols_command(suite, budget)}`)"]
    scored = episode_rows(json.loads(where.read_text()))
    lines = []
    for student in students:
        for base in (f"{EPISODE_CELL}/{b}" for b in baselines):
            for shot in SHOTS:
                d = paired_difference(scored, student, base, shot)
                if d is not None:
                    lines.append(verdict_line(student, base, d, f" on novel-class 5-way {shot} episodes"))
    return lines or [f"- {', '.join(f'`{s}`' for s in students)}: no novel-class episodes of theirs in "
                     f"`{where.name}` yet (`{protocols_command(suite, budget)}`)"]
