"""Finished suite teachers kept beside the results (results/teachers/<folder name>/), so that a new machine
distils from the very teacher a table's rows were recorded with instead of training another one: the thread
count changes a trained teacher's weights, and a retrained teacher would make every recorded row an older
teacher's. A stored teacher is its final weights (a kdforge checkpoint without optimiser, RNG or method
state: about 1 MB for a CIFAR resnet20), its summary, settings and metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

from kdforge.config import RUN_CONFIG
from kdforge.engine.checkpoint import LATEST, read_checkpoint, save_weights
from kdforge.errors import UserError

KEPT_FILES = ("summary.json", RUN_CONFIG, "metrics.jsonl")
TRAINING_STATE = ("optimizer", "method", "rng", "meter")  # what only a resumed run needs


def store_path(results: Path, teacher_folder: Path) -> Path:
    return Path(results) / "teachers" / Path(teacher_folder).name


def store_teacher(teacher_folder: Path, results: Path = Path("results")) -> Path:
    """Copy a finished teacher into the store; returns the stored folder."""
    teacher_folder = Path(teacher_folder)
    if not (teacher_folder / "summary.json").exists() or not (teacher_folder / LATEST).exists():
        raise UserError(f"{teacher_folder} holds no finished teacher (summary.json and {LATEST}); train it first "
                        "with `kdforge bench teacher SUITE`")
    payload = read_checkpoint(teacher_folder / LATEST)
    weights_only = {key: value for key, value in payload.items() if key not in TRAINING_STATE}
    dest = store_path(results, teacher_folder)
    dest.mkdir(parents=True, exist_ok=True)
    save_weights(dest / LATEST, weights_only)
    for name in KEPT_FILES:
        if (teacher_folder / name).exists():
            shutil.copyfile(teacher_folder / name, dest / name)
    return dest


def keep_teacher(teacher_folder: Path, results: Path = Path("results")) -> Path | None:
    """Store a finished teacher unless the store has it already; the stored folder when it was stored now."""
    if (store_path(results, teacher_folder) / "summary.json").exists():
        return None
    return store_teacher(teacher_folder, results)


def restore_teacher(teacher_folder: Path, results: Path = Path("results"), echo=print) -> bool:
    """Fill a teacher folder that holds no finished run from the store, when the store has that teacher;
    True when it did. The checkpoint is copied last, so a folder cut off mid-copy is not taken as finished
    (summary.json marks a finished teacher, and it is written after the weights)."""
    teacher_folder = Path(teacher_folder)
    stored = store_path(results, teacher_folder)
    if (teacher_folder / "summary.json").exists() or not (stored / "summary.json").exists():
        return False
    read_checkpoint(stored / LATEST)  # a damaged stored file is refused here, before anything is copied
    teacher_folder.mkdir(parents=True, exist_ok=True)
    for name in (LATEST, *(n for n in KEPT_FILES if n != "summary.json"), "summary.json"):
        if (stored / name).exists():
            shutil.copyfile(stored / name, teacher_folder / name)
    echo(f"  teacher restored from {stored}")
    return True
