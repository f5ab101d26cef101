"""`kdforge bench accuracy SUITE`: the suite's teacher once (cached by a hash of its config and data), then
every (method, seed) student; one CSV row per finished run, appended as it finishes.

Resumable at two levels: a (method, seed) already in results/SUITE.csv is skipped, and a run killed half-way
continues from its last checkpoint. A suite can be completed over several sittings and machines (rows from
elsewhere can be appended to the CSV).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import time
from datetime import datetime
from pathlib import Path

from kdforge.bench.curves import evals_of, keep_curve
from kdforge.bench.deadline import Sitting, run_seconds, too_late
from kdforge.bench.suites import SUITES, Suite, Variant
from kdforge.bench.teacher_store import keep_teacher, restore_teacher, store_teacher
from kdforge.config import (
    MEASURED_PRECISION,
    RUN_CONFIG,
    TrainConfig,
    load_config,
    settings_differences,
    to_dict,
    trained_settings,
)
from kdforge.errors import ConfigError, UserError
from kdforge.fileio import append_line
from kdforge.plots import epoch_to_fraction

REQUIRED = ("method", "seed", "top1_last", "top1_best", "epochs", "wall_seconds", "images_per_second", "teacher_top1")
# train_top1: the final student's top-1 on its un-augmented training images (absent in rows recorded before it)
# epoch_to_90: the first evaluated epoch whose test top-1 reaches 90 % of the final one (convergence speed)
# threads: the run's torch threads (2 on the 2-core machine: a run that had the machine to itself; 1: a lane beside
# another one); absent in rows recorded before it
# teacher_epochs_computed: epochs whose teacher outputs the run computed itself (0: all replayed from the suite's
# teacher-output cache; empty: no teacher, no cache, or a row from before the column)
# val_top1: the final student's top-1 on the validation split (images outside the training subset), where the
# suite has one: what a suite's settings are chosen on; filled in from the runs' summaries for older rows
COLUMNS = REQUIRED + ("train_top1", "epoch_to_90", "threads", "teacher_epochs_computed", "val_top1")


def results_stem(suite: str, budget: str) -> str:
    return suite if budget == "small" else f"{suite}-{budget}"


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if set(REQUIRED) - set(row):
            raise UserError(f"{path} is not a kdforge results file (columns {list(row)}); move it away")
    return rows


@contextlib.contextmanager
def locked(path: Path, on_wait=None):
    """An exclusive lock beside a results file (PATH.lock) while it is appended to or rewritten: parallel lanes
    append rows, and a rewrite (new columns, withdrawn rows) must not drop a line appended meanwhile. Waits for
    the holder, calling `on_wait()` first when there is one."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): one process at a time is the user's to ensure
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if on_wait:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_row(path: Path, row: dict) -> None:
    with locked(path):
        if not path.exists():
            append_line(path, ",".join(COLUMNS))
        else:
            _add_missing_columns(path)
        append_line(path, ",".join(_cell(row.get(c)) for c in COLUMNS))


def _add_missing_columns(path: Path) -> None:
    """A results file written before a column existed gets it (empty for its rows), rewritten atomically."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if list(header) != list(COLUMNS):
        write_rows(path, read_rows(path))


def write_rows(path: Path, rows: list[dict]) -> None:
    """Rewrite a results file atomically with these (read) rows under today's columns (absent cells empty); callers
    that may race with appending lanes hold `locked(path)`."""
    from kdforge.fileio import atomic_write_text

    lines = [",".join(COLUMNS)] + [",".join(r.get(c) or "" for c in COLUMNS) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def run_folder(runs: Path, row: str, seed: int | str) -> Path:
    """Where a suite's (row, seed) run lives under its runs folder."""
    return Path(runs) / f"{row}-s{seed}"


def with_summary_values(rows: list[dict], runs: Path, column: str, key: str) -> list[dict]:
    """The rows with `column`'s empty cells read from each row's run (runs/METHOD-sSEED/summary.json, key `key`):
    for rows recorded before the column existed. Read-only: the CSV, which parallel lanes append to, is left alone."""
    out = []
    for row in rows:
        summary = run_folder(runs, row["method"], row["seed"]) / "summary.json"
        if not row.get(column) and summary.exists():
            value = json.loads(summary.read_text()).get(key)
            row = {**row, column: _cell(value)} if value is not None else row
        out.append(row)
    return out


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def config_key(cfg: TrainConfig, data_key: str) -> str:
    """A hash of what `cfg` trains (its first section) and of the images it reads."""
    from kdforge.memory.incontext import fingerprint

    return fingerprint(json.dumps(trained_settings(cfg), sort_keys=True), data_key)[:12]


def find_trained(folder: Path, cfg: TrainConfig) -> Path:
    """`folder`, or a sibling of the same name stem (`<stem>-<key>`) that trains what `cfg` trains (finished, or
    killed and resumable): folders made before the key's form changed are found by what they train, not by name."""
    if folder.exists():
        return folder
    stem = folder.name.rpartition("-")[0]
    for sibling in sorted(folder.parent.glob(f"{stem}-*")):
        config = sibling / RUN_CONFIG
        if sibling.name.rpartition("-")[0] == stem and config.exists() and \
                not settings_differences(json.loads(config.read_text())["config"], cfg):
            return sibling
    return folder


def data_fingerprint(cfg: TrainConfig) -> str:
    """Hash of the training images and labels the config reads (in-memory datasets), else of its data config."""
    from kdforge.data import load_data
    from kdforge.memory.incontext import fingerprint

    bundle = load_data(cfg.data, "cpu")
    train = bundle.train
    if hasattr(train, "images"):
        return fingerprint(train.images, train.labels)
    return fingerprint(json.dumps(to_dict(cfg.data), sort_keys=True))


class AccuracyBench:
    def __init__(self, suite: Suite, budget: str = "small", root: Path = Path("runs/bench"),
                 results: Path = Path("results"), threads: int | None = None, echo=print):
        if suite.kind != "train":
            raise ConfigError(f"suite {suite.name!r} is a smoke grid here ({suite.needs}); "
                              f"run it with `kdforge bench smoke {suite.name}`")
        if budget not in suite.budgets:
            raise ConfigError(f"suite {suite.name!r} has budgets {', '.join(suite.budgets)}, not {budget!r}")
        self.suite, self.budget = suite, budget
        self.stem = results_stem(suite.name, budget)
        self.root = Path(root)
        self.results = Path(results)
        self.csv = self.results / f"{self.stem}.csv"
        self.threads = threads
        self.echo = echo

    # ---------------------------------------------------------------- configs
    def _common(self) -> list[str]:
        common = ["progress=false", "tensorboard=false"]
        return common + ([f"threads={self.threads}"] if self.threads else [])

    def teacher_config(self, variant: Variant | None = None) -> tuple[TrainConfig, Path]:
        preset, *overrides = self.suite.teacher
        extra = list(self.suite.budgets[self.budget][0]) + list(variant.teacher if variant else ())
        cfg = load_config(preset, [*MEASURED_PRECISION, *overrides, *extra, *self._common()])
        key = config_key(cfg, data_fingerprint(cfg))
        folder = find_trained(self.root / "teachers" / f"{self.suite.teacher_home or self.suite.name}-{key}", cfg)
        restore_teacher(folder, self.results, self.echo)  # a new machine distils from the stored teacher
        return load_config(preset, [*MEASURED_PRECISION, *overrides, *extra, *self._common(), f"out={folder}"]), folder

    def student_config(self, variant: Variant, seed: int, teacher: Path | None) -> tuple[TrainConfig, Path]:
        preset, *overrides = self.suite.student
        if variant.preset:
            preset = variant.preset
        folder = run_folder(self.root / self.stem, variant.name, seed)
        args = [*MEASURED_PRECISION, *overrides, *self.suite.budgets[self.budget][1], f"method={variant.method}",
                *variant.overrides, f"seed={seed}", f"out={folder}"]
        cfg = load_config(preset, args + self._common())
        if variant.schedule_factor != 1 or variant.per_epochs:
            args += _scaled(cfg, variant)
            cfg = load_config(preset, args + self._common())
        from kdforge.methods import METHODS

        if METHODS.get(cfg.method).uses_teacher(cfg.method_args):
            # the teacher-output cache by default: a seed's teacher forward runs once per (epoch, view) and every
            # later method of that seed replays it (methods that read feature maps run the teacher as before);
            # float32, so that a replayed run trains exactly as an uncached one and rows stay comparable
            cfg = load_config(preset, args + self._common() + [f"teacher_checkpoint={teacher}", "teacher_cache=true",
                                                                "teacher_cache_dtype=float32"])
        return cfg, folder

    def variants(self, names: list[str] | None) -> list[Variant]:
        from kdforge.methods import METHODS

        every = self.suite.variants(METHODS.names())
        if not names:
            return every
        known = {v.name: v for v in every}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"suite {self.suite.name!r} has no method {unknown[0]!r}; it has: {', '.join(known)}")
        return [known[n] for n in names]

    # ---------------------------------------------------------------- running
    def run(self, seeds: int = 3, methods: list[str] | None = None, only_seeds: list[int] | None = None,
            finish_by: datetime | None = None) -> Path:
        """Every (method, seed) of seeds 0..seeds-1 not yet recorded; `only_seeds` restricts this sitting to some
        of them (so that several processes or machines can share a suite without running the same seed), and
        `finish_by` to the runs that can finish before it (kdforge.bench.deadline)."""
        variants = self.variants(methods)
        try:
            self.results.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {self.results}: {exc.strerror}; pass a writable --results") from None
        done = self.recorded_runs()
        todo = [(v, s) for s in range(seeds) for v in variants
                if (v.name, s) not in done and (only_seeds is None or s in only_seeds)]
        chosen = [s for s in range(seeds) if only_seeds is None or s in only_seeds]
        recorded = sum((v.name, s) in done for s in chosen for v in variants)
        self.echo(f"bench {self.stem}: {len(variants)} methods x seeds {chosen}, {len(todo)} runs to do "
                  f"({recorded} already in {self.csv})")
        teachers: dict[tuple, dict] = {}
        sitting = Sitting(finish_by, self.echo)
        for i, (variant, seed) in enumerate(todo, 1):
            if (variant.name, seed) in self.recorded_runs():  # another process of the same suite got there first
                self.echo(f"  [{i}/{len(todo)}] {variant.name} seed {seed}: already in {self.csv}")
                continue
            if sitting.holds_back(f"{variant.name} seed {seed}", lambda end: self.too_late(variant, seed, end),
                                  f"  [{i}/{len(todo)}] "):
                continue
            start = time.perf_counter()
            self.echo(f"  [{i}/{len(todo)}] {variant.name} seed {seed}: training ...")
            if self.uses_teacher(variant):
                if variant.teacher not in teachers:
                    teachers[variant.teacher] = self._teacher(variant)
                teacher = teachers[variant.teacher]
            else:  # a teacher-free row neither waits for the teacher nor trains it; it names it once it exists
                teacher = self.finished_teacher(variant)
            summary = self._student(variant, seed, teacher)
            if (variant.name, seed) in self.recorded_runs():
                continue
            append_row(self.csv, {
                "method": variant.name, "seed": seed, "top1_last": summary["top1_last"],
                "top1_best": best_on_test(summary), "epochs": summary["epochs"],
                "wall_seconds": summary["wall_seconds"], "images_per_second": summary["train_images_per_second"],
                "teacher_top1": summary.get("teacher_top1") or (teacher or {}).get("top1_last"),
                "train_top1": summary.get("train_top1"), "epoch_to_90": epoch_to_fraction(Path(summary["folder"])),
                "threads": summary.get("threads"),
                "teacher_epochs_computed": (summary.get("teacher_cache") or {}).get("epochs_computed"),
                "val_top1": summary.get("val_top1_last")})
            keep_curve(self.results, self.stem, variant.name, seed, summary["top1_last"],
                       evals_of(Path(summary["folder"])))
            self.echo(f"  [{i}/{len(todo)}] {variant.name} seed {seed}: top-1 {summary['top1_last']:.2f}% "
                      f"({took(time.perf_counter() - start, float(summary['wall_seconds']))})")
            self.report()
        report = self.report()
        sitting.close()
        return report

    def too_late(self, variant: Variant, seed: int, finish_by: datetime) -> str | None:
        """Why the run of (variant, seed) must not start before `finish_by` (None: it may)."""
        from kdforge.bench.status import epochs_trained, row_epochs

        recorded = read_rows(self.csv)
        planned = row_epochs(self, variant, [r for r in recorded if r["method"] == variant.name])
        trained = epochs_trained(run_folder(self.root / self.stem, variant.name, seed))
        return too_late(run_seconds(recorded, variant.name, planned, trained, share=self.class_share), finish_by)

    def class_share(self, row: str) -> float:
        """The share of the dataset's classes `row` trains on (1 for a name that is no row of the suite's)."""
        from kdforge.bench.status import class_share

        if not hasattr(self, "_shares"):  # one config per row, built once: a sitting asks for every run
            self._shares = {v.name: class_share(self.student_config(v, 0, None)[0]) for v in self.variants(None)}
        return self._shares.get(row, 1.0)

    def report(self) -> Path:
        """Rewrite the suite's table and plots (results/STEM.md) from its CSV."""
        from kdforge.bench.report import write_report

        return write_report(self.suite, self.stem, self.results, self.root / self.stem)

    def recorded_runs(self) -> set[tuple[str, int]]:
        """(method, seed) pairs already in the CSV; re-read each time because parallel lanes append to it."""
        return {(r["method"], int(r["seed"])) for r in read_rows(self.csv)}

    def uses_teacher(self, variant: Variant) -> bool:
        from kdforge.methods import METHODS

        cfg, _ = self.student_config(variant, 0, None)
        return METHODS.get(cfg.method).uses_teacher(cfg.method_args)

    def finished_teacher(self, variant: Variant) -> dict | None:
        _, folder = self.teacher_config(variant)
        summary = folder / "summary.json"
        return {**json.loads(summary.read_text()), "folder": str(folder)} if summary.exists() else None

    def _teacher(self, variant: Variant | None = None) -> dict:
        cfg, folder = self.teacher_config(variant)
        # lanes started side by side on a suite without a finished teacher: one trains it (or resumes a killed
        # one), the others wait for it here and then distil from it, instead of failing on its run folder's lock
        if (folder / "summary.json").exists():  # finished: reading it needs no lock, and no lane waits on another
            summary = self._train(cfg, folder, "teacher")
        else:
            waiting = functools.partial(self.echo, f"  waiting for the teacher another run is training in {folder}")
            with locked(self.root / ".locks" / folder.name, on_wait=waiting):  # beside, not among, the teachers
                if not (folder / "summary.json").exists():
                    self.echo(f"  teacher -> {folder}")
                summary = self._train(cfg, folder, "teacher")
        stored = keep_teacher(folder, self.results)  # every teacher a row distils from
        if stored:
            self.echo(f"  teacher stored in {stored}")
        return summary

    def _student(self, variant: Variant, seed: int, teacher: dict) -> dict:
        cfg, folder = self.student_config(variant, seed, Path(teacher["folder"]) if teacher else None)
        return self._train(cfg, folder, f"{variant.name} seed {seed}")

    def _train(self, cfg: TrainConfig, folder: Path, what: str) -> dict:
        from kdforge.engine.pipeline import train

        summary_path = folder / "summary.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            if settings_differences(summary["config"], cfg):
                raise UserError(f"{folder} holds a finished run with other settings than {what} needs; "
                                "move it away or choose another --root")
        else:
            resume = has_checkpoint(folder)
            if resume:
                self.echo(f"  resuming {what} in {folder}")
            summary = train(cfg, resume=resume, echo=lambda m: None)
        summary["folder"] = str(folder)
        return summary


def _scaled(cfg: TrainConfig, variant: Variant) -> list[str]:
    """A row's schedule-dependent settings: a paper-budget row's longer schedule (epochs and steps scaled alike)
    and settings given as fractions of the epochs (warm-ups)."""
    extra, epochs = [], cfg.epochs * variant.schedule_factor
    if variant.schedule_factor != 1:
        steps = [m * variant.schedule_factor for m in cfg.optim.milestones]
        extra += [f"epochs={epochs}", f"optim.milestones=[{','.join(map(str, steps))}]",
                  f"eval_every={cfg.eval_every * variant.schedule_factor}"]
    extra += [f"{key}={fraction * epochs:g}" for key, fraction in variant.per_epochs]
    return extra


def took(sitting: float, training: float) -> str:
    """A finished run's time as its line says it: this sitting's, and the training's in all where a resumed run
    trained in earlier sittings too (the run's summary counts every sitting, up to its last checkpoint)."""
    if training <= sitting:
        return f"{sitting:.0f} s"
    return f"{sitting:.0f} s this sitting, {training:.0f} s of training in all"


def best_on_test(summary: dict) -> float:
    """The best test top-1 of any epoch (of the last stage, for a staged method): what the suite tables' "best"
    column states. A run recorded before kdforge kept it separately held it in top1_best when selected on test."""
    if "top1_best_test" in summary:
        return summary["top1_best_test"]
    return summary["top1_best"]


def has_checkpoint(folder: Path) -> bool:
    """A killed run to resume: a checkpoint in the run folder or, for a staged method (REFILLED), in a stage's."""
    places = [folder, *(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    return any((p / name).exists() for p in places for name in ("checkpoint.pt", "checkpoint.prev.pt"))


def run_accuracy(suite: str, seeds: int = 3, methods: list[str] | None = None, budget: str = "small",
                 root: str = "runs/bench", results: str = "results", threads: int | None = None, echo=print,
                 only_seeds: list[int] | None = None, finish_by: datetime | None = None) -> Path:
    bench = AccuracyBench(SUITES.get(suite), budget, Path(root), Path(results), threads, echo)
    return bench.run(seeds, methods, only_seeds, finish_by)


def suite_teacher(suite: str, budget: str = "small", root: str = "runs/bench", threads: int | None = None,
                  train: bool = True, echo=print, row: str | None = None, results: str = "results",
                  store: bool = False) -> Path:
    """The folder of a suite's teacher, the one its rows (or `row`, where rows have teachers of their own classes)
    distil from: scripts that sweep around a suite name it by this, never by globbing the teachers folder, which
    may hold older teachers. Trained first when it is not finished (resuming a killed one) unless `train` is
    False, then a missing teacher is a one-line error. A teacher in the results' store (results/teachers) is
    restored instead of trained; `store` keeps a finished one there."""
    bench = AccuracyBench(SUITES.get(suite), budget, Path(root), Path(results), threads, echo)
    variant = bench.variants([row])[0] if row else None
    _, folder = bench.teacher_config(variant)
    if not (folder / "summary.json").exists():
        if not train:
            raise UserError(f"suite {suite!r} has no finished teacher at {folder}; train it with `kdforge bench "
                            f"teacher {suite} --budget {budget}" + (f" --row {row}`" if row else "`"))
        bench._teacher(variant)
    if store:
        echo(f"teacher stored in {store_teacher(folder, bench.results)}")
    return folder

