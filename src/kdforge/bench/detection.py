"""The CPU detection suite: COCO-format canvases built from real CIFAR-10 pixels, a Faster R-CNN teacher trained
once, and students by every detection method and seed; results/detection-cpu.csv (a row per finished run,
appended as it finishes: the suite resumes where it stopped) and results/detection-cpu.md (AP per method, with
paired 95 % intervals of the differences to ce and kd)."""

from __future__ import annotations

import json
import statistics
from datetime import datetime
from pathlib import Path

from kdforge.bench.curves import keep_curve, records_of, row_curve
from kdforge.bench.deadline import Sitting, run_seconds, too_late
from kdforge.bench.report import format_difference, paired_difference
from kdforge.bench.report import read_csv as read_rows
from kdforge.bench.teacher_store import keep_teacher, restore_teacher
from kdforge.config import MEASURED_PRECISION, load_config
from kdforge.errors import UserError
from kdforge.fileio import append_line, atomic_write_text

SUITE = "detection-cpu"
# the canvases: 64 px, 1-3 CIFAR-10 objects of 16-40 px each; train / val objects from disjoint, class-stratified parts of CIFAR's
# training split, test objects from its test split (`kdforge detection-data` with these arguments)
DATA = {"canvas": 64, "train": 2000, "val": 200, "test": 500, "objects": "1-3", "scale": "16-40", "seed": 0}
METHODS = ("ce", "kd", "dkd", "ckd", "reviewkd", "reviewkd+dkd", "reviewkd+ckd")
CURVE_RECORDS = ("epoch", "eval")  # what a run's kept curve holds: the figure plots losses and AP
COLUMNS = ("method", "seed", "ap_last", "ap50_last", "ap75_last", "ap_best", "epochs", "wall_seconds",
           "images_per_second", "teacher_ap")


def data_identity() -> dict:
    """What decides the canvases: the arguments and the builder's version."""
    from kdforge.data.detection_build import BUILDER_VERSION

    return {"builder": BUILDER_VERSION, **DATA}


def data_folder(root: Path) -> Path:
    tag = "-".join(f"{k}{v}" for k, v in data_identity().items())
    return root / "detection-data" / f"cifar10-{tag}"


def ensure_data(root: Path, echo=print) -> Path:
    from kdforge.data.detection_build import build_detection_data

    folder = data_folder(root)
    if not (folder / "test.json").exists():
        echo(f"  building the canvases -> {folder}")
        build_detection_data(folder, {s: DATA[s] for s in ("train", "val", "test")}, canvas=DATA["canvas"],
                             objects=DATA["objects"], scale=DATA["scale"], seed=DATA["seed"], echo=echo)
    return folder


def teacher_folder(root: Path, common: list[str]) -> Path:
    """The teacher's run folder, named by a hash of what it trains (its preset and the canvases), so that a changed
    recipe never reuses a teacher trained by another."""
    from kdforge.bench.accuracy import config_key, find_trained

    cfg = load_config("detection-cpu-teacher", common)
    return find_trained(root / "teachers" / f"{SUITE}-{config_key(cfg, json.dumps(data_identity()))}", cfg)


def student_folder(root: Path, method: str, seed: int) -> Path:
    """The run folder of a row's student at one seed (`kdforge bench status detection-cpu` reads it too)."""
    return Path(root) / SUITE / f"{method}-s{seed}"


def _train(preset: str, overrides: list[str], folder: Path, what: str, echo) -> dict:
    from kdforge.engine.pipeline import train

    if (folder / "summary.json").exists():
        return json.loads((folder / "summary.json").read_text())
    resume = (folder / "checkpoint.pt").exists() or (folder / "checkpoint.prev.pt").exists()
    echo(f"  {'resuming' if resume else 'training'} {what} -> {folder}")
    return train(load_config(preset, overrides + [f"out={folder}"]), resume=resume, echo=lambda m: None)


def run_detection_suite(seeds: int = 3, methods: list[str] | None = None, only_seeds: list[int] | None = None,
                        threads: int | None = None, root: Path = Path("runs/bench"), results: Path = Path("results"),
                        echo=print, overrides: tuple[str, ...] = (), finish_by: datetime | None = None) -> str:
    """Train what the suite lacks (the canvases, the teacher, each (method, seed) student) and write its table
    (`seeds` 0: the canvases and the teacher only); `overrides` apply to teacher and students alike (the tests
    shrink the suite with them); `finish_by` starts only the students that can finish by then
    (kdforge.bench.deadline)."""
    unknown = sorted(set(methods or ()) - set(METHODS))
    if unknown:
        raise UserError(f"the detection suite's rows are {', '.join(METHODS)}; not {', '.join(unknown)}")
    root, results = Path(root), Path(results)
    data = ensure_data(root, echo)
    common = [*MEASURED_PRECISION, f"data.root={data}", "progress=false", "tensorboard=false", *overrides] + \
        ([f"threads={threads}"] if threads else [])
    teacher_dir = teacher_folder(root, common)
    restore_teacher(teacher_dir, results, echo)  # a new machine distils from the stored teacher
    teacher = _train("detection-cpu-teacher", common, teacher_dir, "the teacher", echo)
    stored = keep_teacher(teacher_dir, results)
    if stored:
        echo(f"  teacher stored in {stored}")
    table = results / f"{SUITE}.csv"
    if not table.exists():  # before any student, so that lanes sharing the suite never both write it
        table.parent.mkdir(parents=True, exist_ok=True)
        append_line(table, ",".join(COLUMNS))
    done = {(r["method"], int(r["seed"])) for r in read_rows(table)}
    sitting = Sitting(finish_by, echo)
    for seed in only_seeds if only_seeds is not None else range(seeds):
        for method in methods or METHODS:
            if (method, seed) in done:
                continue
            folder = student_folder(root, method, seed)
            if sitting.holds_back(f"{method} seed {seed}", lambda end: _too_late(table, method, folder, common, end),
                                  "  "):
                continue
            extra = [f"method={method}", f"seed={seed}"] + ([] if method == "ce" else [f"teacher_checkpoint={teacher_dir}"])
            summary = _train("detection-cpu-student", common + extra, folder, f"{method} seed {seed}", echo)
            row = {"method": method, "seed": seed, "epochs": summary["epochs"], "wall_seconds": summary["wall_seconds"],
                   "images_per_second": summary["train_images_per_second"], "teacher_ap": teacher["ap_last"],
                   **{k: summary[k] for k in ("ap_last", "ap50_last", "ap75_last", "ap_best")}}
            append_line(table, ",".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS))
            keep_curve(results, SUITE, method, seed, row["ap_last"], records_of(folder, CURVE_RECORDS))
    table_text = write_table(results, teacher, root)
    sitting.close()
    return table_text


def _too_late(table: Path, method: str, folder: Path, common: list[str], finish_by: datetime) -> str | None:
    from kdforge.bench.status import epochs_trained

    planned = load_config("detection-cpu-student", common).epochs
    return too_late(run_seconds(read_rows(table), method, planned, epochs_trained(folder)), finish_by)


def write_table(results: Path, teacher: dict, root: Path | None = None) -> str:
    rows = read_rows(results / f"{SUITE}.csv")
    lines = [f"# {SUITE}: detection distillation on CIFAR-10 canvases (CPU)", "",
             f"Generated by `kdforge bench detection`. Canvases: {json.dumps(DATA)}. Teacher resnet20-FPN Faster "
             f"R-CNN: AP {teacher['ap_last']:.2f} (AP50 {teacher['ap50_last']:.2f}); students resnet8-FPN. AP is COCO box "
             "AP (%) on the test split at the last epoch; differences are paired by seed, 95 % t intervals.", "",
             "| method | n | AP (mean ± std) | AP50 | AP75 | AP − ce [95 % CI] | AP − kd [95 % CI] | min / run |",
             "|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        runs = [r for r in rows if r["method"] == method]
        if not runs:
            continue
        ap = [float(r["ap_last"]) for r in runs]
        spread = f" ± {statistics.stdev(ap):.2f}" if len(ap) > 1 else ""
        mean = lambda key: statistics.fmean(float(r[key]) for r in runs)  # noqa: E731
        lines.append(f"| {method} | {len(runs)} | {statistics.fmean(ap):.2f}{spread} | {mean('ap50_last'):.2f} | "
                     f"{mean('ap75_last'):.2f} | {format_difference(paired_difference(rows, method, 'ce', 'ap_last'))} | "
                     f"{format_difference(paired_difference(rows, method, 'kd', 'ap_last'))} | "
                     f"{mean('wall_seconds') / 60:.1f} |")
    curves = _curves(rows, root, results) if root is not None else None
    if curves:
        lines += ["", f"![losses and test AP by epoch, seed 0 of each method]({curves.name})"]
    text = "\n".join(lines) + "\n"
    atomic_write_text(results / f"{SUITE}.md", text)
    return text


def _curves(rows: list[dict], root: Path, results: Path) -> Path | None:
    """Losses and test AP by epoch of each method's seed-0 run (kdforge plot's three panels), from its run folder or,
    where that is gone, from the curve kept when it was recorded."""
    from kdforge.plots import curves_of, plot_curves

    curves = []
    for method in METHODS:
        final = next((r["ap_last"] for r in rows if r["method"] == method and r["seed"] == "0"), None)
        if final is None:
            continue
        records = row_curve(results, SUITE, student_folder(root, method, 0), method, 0, final, score="ap_last",
                            kinds=CURVE_RECORDS) or []
        if any(r["type"] == "eval" for r in records):
            curves.append(curves_of(records, method))
    try:
        return plot_curves(curves, results / f"{SUITE}-curves.png", f"{SUITE}: seed 0") if curves else None
    except UserError:  # matplotlib missing: the table stands alone
        return None
