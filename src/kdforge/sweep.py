"""`kdforge sweep CONFIG [overrides] --grid KEY=V1,V2 ... --seeds N --select-on val`: every combination of the
grid's values, N seeds each, one resumable run folder per (combination, seed); the combination with the best mean
validation top-1 is chosen. `--cell "[NAME:] KEY=V KEY=V"` (repeated) lists the combinations one by one instead
(an ablation table: each cell changes a few settings of the config, the rest stay as the config has them). Never the test split: a config without a validation split is refused. Writes a
markdown table (test top-1 reported beside, never used) and the choice as JSON.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kdforge.errors import ConfigError, UserError
from kdforge.fileio import append_line, atomic_write_json, atomic_write_text

SELECTABLE = {"val": "val_top1_last"}  # what a sweep may select on: the validation split, never the test split


@dataclass(frozen=True)
class Grid:
    keys: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]  # per key, the values as written (YAML scalars, parsed by the config)
    # listed cells instead of the product: per cell, a value per key (None: the config's own) and a name
    cells: tuple[tuple[str | None, ...], ...] = ()
    names: tuple[str, ...] = ()

    def combinations(self) -> list[tuple[str | None, ...]]:
        return list(self.cells) if self.cells else list(itertools.product(*self.values))

    def name(self, combo: tuple[str | None, ...]) -> str:
        return self.names[self.cells.index(combo)] if self.cells else slug(self.keys, combo)

    def overrides(self, combo: tuple[str | None, ...]) -> list[str]:
        return [f"{k}={v}" for k, v in zip(self.keys, combo) if v is not None]

    def command_args(self) -> str:
        if self.cells:
            return " ".join(f'--cell "{n}: {" ".join(self.overrides(c))}"' for n, c in zip(self.names, self.cells))
        return " ".join(f"--grid {k}={','.join(v)}" for k, v in zip(self.keys, self.values))


def parse_grid(specs: list[str]) -> Grid:
    """`key=v1,v2` per spec; commas inside [...] stay with their value (`optim.milestones=[60,80],[30,40]`)."""
    keys, values = [], []
    for spec in specs:
        key, sep, rest = spec.partition("=")
        if not sep or not key or not rest:
            raise ConfigError(f"--grid takes KEY=V1,V2,..., got {spec!r}")
        if key in keys:
            raise ConfigError(f"--grid names {key!r} twice; give all its values in one --grid")
        keys.append(key)
        values.append(tuple(v.strip() for v in re.split(r",(?![^\[]*\])", rest) if v.strip()))
    if not keys:
        raise ConfigError("a sweep needs at least one --grid KEY=V1,V2,... (or --cell)")
    return Grid(tuple(keys), tuple(values))


def parse_cells(specs: list[str]) -> Grid:
    """Each spec one combination: `[NAME:] KEY=V KEY=V ...` (an empty spec is the config as given)."""
    names, settings = [], []
    for spec in specs:
        head, colon, tail = spec.partition(":")
        named = colon and "=" not in head
        pairs = {}
        for item in (tail if named else spec).split():
            key, sep, value = item.partition("=")
            if not sep or not key or not value:
                raise ConfigError(f"--cell takes [NAME:] KEY=VALUE ..., got {item!r} in {spec!r}")
            if key in pairs:
                raise ConfigError(f"--cell {spec!r} sets {key!r} twice")
            pairs[key] = value
        name = head.strip() if named else (slug(tuple(pairs), tuple(pairs.values())) or "base")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ConfigError(f"--cell name {name!r}: letters, digits, '.', '_' and '-' only (it names run folders)")
        if name in names or pairs in settings:
            raise ConfigError(f"--cell {spec!r} repeats another cell")
        names.append(name)
        settings.append(pairs)
    if not names:
        raise ConfigError("a sweep needs at least one --cell [NAME:] KEY=VALUE ... (or --grid)")
    keys = tuple(dict.fromkeys(k for pairs in settings for k in pairs))
    cells = tuple(tuple(pairs.get(k) for k in keys) for pairs in settings)
    return Grid(keys, tuple(tuple(dict.fromkeys(v for v in col if v is not None)) for col in zip(*cells)),
                cells, tuple(names))


def slug(keys: tuple[str, ...], combo: tuple[str, ...]) -> str:
    text = "_".join(f"{k.split('.')[-1]}-{v}" for k, v in zip(keys, combo))
    return re.sub(r"[^A-Za-z0-9._-]+", "", text.replace("[", "").replace("]", "").replace(",", "-"))


def _recorded(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["config"]


def _same_run(cfg, folders: list[Path]) -> Path | None:
    """A finished run under `folders` whose recorded settings are exactly `cfg`'s: training is deterministic for a
    config and seed, so that run is this one."""
    from kdforge.config import settings_differences

    for run in sorted(p.parent for folder in folders for p in Path(folder).glob("*/summary.json")):
        if not settings_differences(_recorded(run), cfg):
            return run
    return None


class Ledger:
    """The sweep's finished runs, one JSON line each (the row the choice reads, with the run's recorded settings),
    kept beside the sweep's table in the results: a run recorded there counts as done on a machine that never held
    its folder, so a sweep cut off by a new machine loses only its unfinished runs. Lanes of one sweep append to
    it concurrently (one write per line)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip().endswith("}")]

    def find(self, cfg, seed: int, val_per_class: int | None) -> dict | None:
        """The record of a run with exactly `cfg`'s trained settings at `seed`, read on the same validation size."""
        from kdforge.config import settings_differences

        return next((r for r in self.records() if r["seed"] == seed and r.get("val_per_class") == val_per_class
                     and not settings_differences(r["config"], cfg)), None)

    def add(self, row: dict, run: dict, val_per_class: int | None) -> None:
        """`run`: the run's summary (whose config is what the record is matched by) and its evaluation records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_line(self.path, json.dumps({**row, **run, "config": run["summary"]["config"],
                                           "val_per_class": val_per_class}, sort_keys=True))


def finished_run(folder: Path) -> dict:
    """What a ledger keeps of a finished run folder: its summary and its evaluation records (the curve a suite's
    table reads its convergence epoch from); its weights stay in the folder."""
    from kdforge.bench.curves import evals_of

    return {"summary": json.loads((Path(folder) / "summary.json").read_text()), "evals": evals_of(folder)}


def ledger_path(out: Path) -> Path:
    return Path(out).with_suffix(".runs.jsonl")


def _reused_record(cfg, seed: int, val_per_class: int | None, reuse: list[Path]) -> dict | None:
    """A record of another sweep's ledger (a `--reuse` path ending in .runs.jsonl) with exactly this run's settings."""
    for path in reuse:
        if str(path).endswith(".runs.jsonl"):
            found = Ledger(path).find(cfg, seed, val_per_class)
            if found:
                return found
    return None


def run_sweep(config: str, overrides: list[str], grid: Grid, seeds: int, select_on: str, root: Path,
              out: Path, echo=print, only_seeds: list[int] | None = None, val_per_class: int | None = None,
              reuse: list[Path] = (), finish_by: datetime | None = None) -> dict | None:
    """Run what is missing, then choose; with `only_seeds`, this sitting trains those seeds alone (parallel lanes
    share a sweep so) and the choice is written once every run of every seed is done (None until then). With
    `val_per_class`, the validation figure is each run's final weights on that many images per class outside the
    training subset (kdforge.bench.revalidate) instead of the run's own split. A run missing here that a finished
    run under a `reuse` folder (another sweep's) already trained with exactly its settings is copied, not trained.
    With `finish_by`, a run starts only if it can finish by then, timed as a suite's (kdforge.bench.deadline) by the
    sweep's recorded runs: the cell's slowest, else the sweep's slowest pace per epoch."""
    import shutil

    from kdforge.config import MEASURED_PRECISION, load_config, settings_differences
    from kdforge.engine.pipeline import train

    if select_on not in SELECTABLE:
        raise ConfigError(f"--select-on {select_on!r}: a sweep selects on the validation split only ({', '.join(SELECTABLE)})")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    combos = grid.combinations()
    configs = {}
    for combo in combos:  # every configuration validated before the first run starts
        for seed in range(seeds):
            folder = Path(root) / f"{grid.name(combo)}-s{seed}"
            # float32 on every machine, as the suites (a choice is never a machine's arithmetic); overrides may ask bf16
            args = [*MEASURED_PRECISION, *overrides, *grid.overrides(combo), f"seed={seed}", f"out={folder}",
                    "progress=false"]
            cfg = load_config(config, args)
            if not cfg.data.val_per_class and not val_per_class:
                raise ConfigError("a sweep selects on a validation split: set data.val_per_class (images per class "
                                  "drawn from outside the training subset) or pass --val-per-class")
            differences = settings_differences(_recorded(folder), cfg) if (folder / "summary.json").exists() else []
            if differences:
                raise ConfigError(f"{folder} holds a finished run with other settings ({differences[0]}); move it "
                                  "away or choose another --name")
            configs[combo, seed] = cfg
    if only_seeds is not None and not set(only_seeds) <= set(range(seeds)):
        raise ConfigError(f"--only-seeds {only_seeds} names seeds outside 0..{seeds - 1}")
    mine = {k: cfg for k, cfg in configs.items() if only_seeds is None or k[1] in only_seeds}
    echo(f"sweep: {len(combos)} combinations x {seeds} seeds = {len(configs)} runs under {root}"
         + (f"; this sitting: seeds {only_seeds}" if only_seeds is not None else ""))
    ledger = Ledger(ledger_path(out))
    folders = [Path(r) for r in reuse if not str(r).endswith(".runs.jsonl")]
    from kdforge.bench.deadline import Sitting

    sitting = Sitting(finish_by, echo)
    for i, ((combo, seed), cfg) in enumerate(mine.items(), 1):
        finished = (cfg.run_dir / "summary.json").exists()
        recorded = ledger.find(cfg, seed, val_per_class)
        reused = None if finished or recorded else _reused_record(cfg, seed, val_per_class, list(reuse))
        same = None if cfg.run_dir.exists() or recorded or reused else _same_run(cfg, folders)
        to_train = not (finished or recorded or reused or same is not None)
        if to_train and sitting.holds_back(f"{grid.name(combo)} seed {seed}",
                                           lambda end: _too_late(ledger, grid, combo, cfg, end), f"  [{i}/{len(mine)}] "):
            continue
        if finished:
            state = "done before"
        elif recorded:
            state = f"recorded in {ledger.path}"
        elif reused:
            row = {**reused, "combination": _setting(grid, combo)}
            ledger.add({k: row[k] for k in ("combination", "seed", select_on, "test", "folder")},
                       {k: reused[k] for k in ("summary", "evals")}, val_per_class)
            state = "the same run, recorded by another sweep"
        elif same is not None:
            shutil.copytree(same, cfg.run_dir)
            state = f"the same run as {same}, copied"
        else:
            resume = (cfg.run_dir / "checkpoint.pt").exists() or any(cfg.run_dir.glob("*/checkpoint.pt"))
            train(cfg, resume=resume, echo=lambda m: None)
            state = "resumed" if resume else "trained"
        if not recorded and not reused:
            ledger.add(_row(cfg, combo, seed, grid, select_on, val_per_class), finished_run(cfg.run_dir), val_per_class)
        echo(f"  [{i}/{len(mine)}] {grid.name(combo)} seed {seed}: {state}")
    missing = [cfg.run_dir for (_, seed), cfg in configs.items()
               if not (cfg.run_dir / "summary.json").exists() and not ledger.find(cfg, seed, val_per_class)]
    if missing:
        echo(f"sweep: {len(missing)} of {len(configs)} runs not finished (another sitting's seeds); the choice is "
             "written when every run is done")
        sitting.close()
        return None
    rows = []
    for (combo, seed), cfg in configs.items():
        record = ledger.find(cfg, seed, val_per_class)
        rows.append(_recorded_row(record, combo, grid, select_on) if record
                    else _row(cfg, combo, seed, grid, select_on, val_per_class))
    result = _choose(rows, grid, select_on)
    result.update(config=config, overrides=list(overrides), seeds=seeds, select_on=select_on,
                  val_per_class=val_per_class)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), result)
    atomic_write_text(out.with_suffix(".md"), _table(result, grid, select_on))
    echo(f"chosen on {select_on}: {result['chosen']} -> {out.with_suffix('.md')}")
    return result


def _too_late(ledger: Ledger, grid: Grid, combo: tuple, cfg, finish_by: datetime) -> str | None:
    """Why the run of `cfg` (a cell of the sweep) must not start before `finish_by` (None: it may)."""
    from kdforge.bench.deadline import run_seconds, too_late
    from kdforge.bench.status import epochs_trained, planned_epochs

    recorded = [{"method": grid.name(c), "epochs": r["summary"]["epochs"], "wall_seconds": r["summary"]["wall_seconds"]}
                for r in ledger.records() for c in grid.combinations() if r["combination"] == _setting(grid, c)]
    return too_late(run_seconds(recorded, grid.name(combo), planned_epochs(cfg), epochs_trained(cfg.run_dir),
                                ("cell", "sweep")),
                    finish_by)


def _row(cfg, combo: tuple[str, ...], seed: int, grid: Grid, select_on: str, val_per_class: int | None) -> dict:
    summary = json.loads((cfg.run_dir / "summary.json").read_text())
    if val_per_class:
        from kdforge.bench.revalidate import validation_top1

        metric = validation_top1(cfg.run_dir, val_per_class)
    else:
        metric = summary.get(SELECTABLE[select_on])
    if metric is None:
        raise UserError(f"{cfg.run_dir} recorded no {SELECTABLE[select_on]}; was it trained with a validation split?")
    return {"combination": _setting(grid, combo), "seed": seed, select_on: metric,
            "test": summary["top1_last"], "train": summary.get("train_top1"), "folder": str(cfg.run_dir)}


def _recorded_row(record: dict, combo: tuple[str, ...], grid: Grid, select_on: str) -> dict:
    """A ledger record as the row `_row` reads from a run folder."""
    return {**{k: record[k] for k in ("seed", select_on, "test", "folder")}, "combination": _setting(grid, combo),
            "train": record["summary"].get("train_top1")}


def _choose(rows: list[dict], grid: Grid, select_on: str) -> dict:
    table = []
    for combo in grid.combinations():
        mine = [r for r in rows if r["combination"] == _setting(grid, combo)]
        sel = [r[select_on] for r in mine]
        test = [r["test"] for r in mine]
        # how well each cell fits its training images: a regulariser too strong for the student shows here first
        train = [r["train"] for r in mine if r.get("train") is not None]
        table.append({"combination": _setting(grid, combo), "name": grid.name(combo), "n": len(mine),
                      f"{select_on}_mean": statistics.fmean(sel), f"{select_on}_std": _std(sel),
                      "test_mean": statistics.fmean(test), "test_std": _std(test),
                      "train_mean": statistics.fmean(train) if train else None})
    best = max(table, key=lambda r: r[f"{select_on}_mean"])  # ties: the first in grid order
    return {"chosen": best["combination"], "chosen_name": best["name"], "table": table, "runs": rows}


def _setting(grid: Grid, combo: tuple[str | None, ...]) -> dict:
    """What a combination sets (a cell leaves the keys it does not name to the config)."""
    return {k: v for k, v in zip(grid.keys, combo) if v is not None}


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _table(result: dict, grid: Grid, select_on: str) -> str:
    overrides = " ".join(result["overrides"])
    grid_args = grid.command_args()
    n = result.get("val_per_class")
    sized = f" --val-per-class {n}" if n else ""
    where = f" ({n} images per class outside the training subset, each run's final weights)" if n else ""
    versus, first = _versus_first(result)
    lines = [f"# Sweep of {result['config']}", "",
             f"Generated by `kdforge sweep {result['config']} {overrides} {grid_args} --seeds {result['seeds']} "
             f"--select-on {select_on}{sized}`. The choice reads the {select_on} split only{where}; test top-1 is "
             "reported beside it and was never used.", "",
             "| " + ("cell | " if grid.cells else "") + " | ".join(grid.keys) +
             f" | n | {select_on} top-1 (mean ± std) | test top-1 (mean ± std) | test − {first} (paired by seed, "
             "95 %) | train top-1 (mean) | |",
             "|" + "---|" * (len(grid.keys) + 6 + bool(grid.cells))]
    for row in result["table"]:
        mark = "**chosen**" if row["combination"] == result["chosen"] else ""
        named = f"{row['name']} | " if grid.cells else ""
        train = "–" if row.get("train_mean") is None else f"{row['train_mean']:.2f}"
        lines.append("| " + named + " | ".join(str(row["combination"].get(k, "-")) for k in grid.keys) +
                     f" | {row['n']} | {row[f'{select_on}_mean']:.2f} ± {row[f'{select_on}_std']:.2f} | "
                     f"{row['test_mean']:.2f} ± {row['test_std']:.2f} | {versus[row['name']]} | {train} | {mark} |")
    return "\n".join(lines) + "\n"


def _versus_first(result: dict) -> tuple[dict[str, str], str]:
    """Each cell's test top-1 minus the first cell's, paired by seed with a 95 % interval (a check reads two cells
    side by side: compiled against eager), by cell name; and the first cell's name."""
    from kdforge.bench.report import format_difference, paired_difference

    names = {json.dumps(r["combination"], sort_keys=True): r["name"] for r in result["table"]}
    rows = [{"method": names[json.dumps(r["combination"], sort_keys=True)], "seed": r["seed"], "test": r["test"]}
            for r in result["runs"]]
    first = result["table"][0]["name"]
    return {r["name"]: format_difference(paired_difference(rows, r["name"], first, "test"))
            for r in result["table"]}, first
