"""One seed of every row of a suite, trained twice: with today's defaults (compilation `auto`, the student's layout
`auto`, bf16 `auto` where the suite pins float32, the BatchNorm-folded teacher, the suite's teacher-output cache,
which the first cache-capable row fills and the later rows replay) and with the old ones (`compile=false
teacher_fold_bn=false teacher_cache=false channels_last=false amp=false`). The two sides of each row run back
to back, their order alternating from row to row, so both see the same machine. Reports the summed wall time of
each side, their ratio, and whether each new run's top-1 lies within the row's recorded 3-seed spread. Resumable:
a finished row is read back from the JSON (a new machine has none of the run folders), a finished (row, side) from
its run folder, and a killed one continues; the JSON is rewritten after every row, with the time each row finished
(the whole suite takes several hours on 2 cores, so it may span sittings; with `--finish-by`, a row's two sides
never do: a row starts only when both can finish by then, each timed by `side_seconds`).

    KDFORGE_DATA=../shared/data .venv/bin/python bench/suite_speed.py [--suite cifar10-cpu] [--seed 0]
        [--threads 2] [--methods ce,kd,...] [--root runs/suite-speed] [--out results/suite_speed.json]
        [--finish-by HH:MM]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

OLD_DEFAULTS = ("compile=false", "teacher_fold_bn=false", "teacher_cache=false", "channels_last=false", "amp=false")
# a suite pins float32 (kdforge.config.MEASURED_PRECISION); a user's run gets amp=auto
NEW_DEFAULTS = ("amp=auto",)
SIDES = {"new": NEW_DEFAULTS, "old": OLD_DEFAULTS}


def side_folder(root: Path, side: str) -> Path:
    """Where one side's runs go: named by the side and a digest of its overrides, so that a folder trained under
    another definition of the defaults is never read back as this one."""
    import hashlib

    return root / f"{side}-{hashlib.sha1(' '.join(SIDES[side]).encode()).hexdigest()[:8]}"


def fresh_cache(root: Path) -> Path:
    """A teacher-output cache that starts empty (the new side pays for filling it), beside links to the decoded
    datasets of the usual cache, which neither side should pay for."""
    from kdforge.data.sources import cache_dir

    fresh = root / "cache"
    fresh.mkdir(parents=True, exist_ok=True)
    for decoded in cache_dir().glob("*.npz"):
        link = fresh / decoded.name
        if not link.exists():
            link.symlink_to(decoded.resolve())
    return fresh


def spread(csv: Path, row: str) -> tuple[float, float] | None:
    from kdforge.bench.accuracy import read_rows

    values = [float(r["top1_last"]) for r in read_rows(csv) if r["method"] == row] if csv.exists() else []
    return (min(values), max(values)) if len(values) >= 2 else None


def run_side(bench, variant, seed: int, teacher: Path, side: str, root: Path) -> dict:
    from kdforge.bench.accuracy import has_checkpoint, run_folder
    from kdforge.config import TrainConfig, apply_overrides, from_dict, to_dict
    from kdforge.engine.pipeline import train

    cfg, _ = bench.student_config(variant, seed, teacher)
    folder = run_folder(side_folder(root, side), variant.name, seed)
    summary_path = folder / "summary.json"
    if not summary_path.exists():
        extra = [f"out={folder}", "progress=false", "tensorboard=false", *SIDES[side]]
        cfg = from_dict(TrainConfig, apply_overrides(to_dict(cfg), extra))
        train(cfg, resume=has_checkpoint(folder), echo=lambda m: None)
    summary = json.loads(summary_path.read_text())
    return {"wall_seconds": summary["wall_seconds"], "top1_last": summary["top1_last"],
            "compiled": summary.get("compiled"), "amp": summary.get("amp"), "teacher_cache": summary.get("teacher_cache")}


def row_too_late(bench, variant, seed: int, root: Path, finish_by, measured: dict | None = None) -> str | None:
    """Why a row must not start before `finish_by` (None: it may): each side it has left takes `side_seconds`."""
    from kdforge.bench.accuracy import read_rows, run_folder
    from kdforge.bench.deadline import too_late
    from kdforge.bench.status import row_epochs

    recorded = read_rows(bench.csv) if bench.csv.exists() else []
    planned = row_epochs(bench, variant, [r for r in recorded if r["method"] == variant.name])
    one_side = side_seconds(recorded, variant.name, planned, measured or {})
    left = [side for side in SIDES if not (run_folder(side_folder(root, side), variant.name, seed) / "summary.json").exists()]
    if one_side is None or not left:
        return None
    return too_late((one_side[0] * len(left), f"{len(left)} side(s), each as {one_side[1]}"), finish_by)


def side_seconds(recorded: list[dict], row: str, planned: int, measured: dict) -> tuple[float, str] | None:
    """Seconds one side of `row` takes in this sitting, and what timed it. Before any row is measured here: the
    row's slowest recorded run (the suite's table spans sittings on slower CPUs, so this errs long). Once some are:
    the row's median recorded run (else the table's median pace per epoch), times the largest ratio of a measured
    side to its own row's median recorded run, which carries this machine's pace over to the rows still to run."""
    from kdforge.bench.deadline import run_seconds

    def median(name: str) -> float | None:
        walls = sorted(float(r["wall_seconds"]) for r in recorded if r["method"] == name)
        return walls[len(walls) // 2] if walls else None

    ratios = [done[side]["wall_seconds"] / median(name) for name, done in measured.items() if median(name)
              for side in ("new", "old")]
    if not ratios:
        return run_seconds(recorded, row, planned)
    if median(row) is not None:
        base, basis = median(row), "the row's median recorded run"
    elif recorded:
        paces = sorted(float(r["wall_seconds"]) / int(r["epochs"]) for r in recorded)
        base, basis = paces[len(paces) // 2] * planned, "the table's median pace per epoch"
    else:
        return None
    return base * max(ratios), f"{basis} x {max(ratios):.2f} (the measured rows' slowest ratio to theirs)"


def recorded_rows(out: Path, identity: dict) -> dict:
    """The rows an earlier sitting finished, from its JSON, when it measured the same thing (suite, budget, seed,
    threads and both sides' defaults); none otherwise."""
    if not out.exists():
        return {}
    report = json.loads(out.read_text())
    if any(report.get(key) != value for key, value in identity.items()):
        return {}
    return report.get("rows", {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="cifar10-cpu")
    parser.add_argument("--budget", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", help="comma-separated rows (default: every row of the suite)")
    parser.add_argument("--root", default="runs/suite-speed")
    parser.add_argument("--results", default="results", help="where the suite's recorded CSV is")
    parser.add_argument("--out", default="results/suite_speed.json")
    parser.add_argument("--finish-by", help="HH:MM (the next time the clock reads it) or an ISO date-time: start a "
                                            "row only when both its sides can finish by then")
    args = parser.parse_args()
    from kdforge.bench.deadline import Sitting, parse_finish_by
    from kdforge.errors import FolderInUseError, UserError

    try:
        finish_by = parse_finish_by(args.finish_by) if args.finish_by else None
    except UserError as exc:
        print(f"bench/suite_speed.py: {exc}", file=sys.stderr)
        return 2
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    # a second sitting beside this one would share its two cores and skew both timings, and rewrite the same JSON
    from kdforge.engine.run import RunLock

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(RunLock(root))
        except FolderInUseError:
            print(f"bench/suite_speed.py: another sitting is measuring in {root}; wait for it to end (two at once "
                  "would perturb each other's wall time)", file=sys.stderr)
            return 2
        except UserError as exc:  # the root is not writable
            print(f"bench/suite_speed.py: {exc}", file=sys.stderr)
            return 2
        return measure(args, root, Sitting(finish_by, lambda line: print(line, flush=True)))


def measure(args, root: Path, sitting) -> int:
    """Every row not yet recorded, both sides back to back; the JSON rewritten after each."""
    from kdforge.errors import SittingOver

    os.environ["KDFORGE_CACHE"] = str(fresh_cache(root))
    from kdforge.bench.accuracy import AccuracyBench, suite_teacher
    from kdforge.bench.suites import SUITES
    from kdforge.fileio import atomic_write_json

    teacher = suite_teacher(args.suite, args.budget, threads=args.threads, echo=lambda m: None,
                            results=args.results)
    bench = AccuracyBench(SUITES.get(args.suite), args.budget, results=Path(args.results), threads=args.threads,
                         echo=lambda m: None)
    variants = bench.variants([m for m in (args.methods or "").split(",") if m] or None)
    identity = {"suite": args.suite, "budget": args.budget, "seed": args.seed, "threads": args.threads,
                "old_defaults": list(OLD_DEFAULTS), "new_defaults": list(NEW_DEFAULTS)}
    earlier = recorded_rows(Path(args.out), identity)
    # every row an earlier sitting finished is in from the start, so that each write below keeps them all
    rows = {v.name: earlier[v.name] for v in variants if v.name in earlier}
    for i, variant in enumerate(variants):
        if variant.name in earlier:
            continue
        if sitting.holds_back(f"{variant.name} seed {args.seed}",
                              lambda end: row_too_late(bench, variant, args.seed, root, end, rows),
                              f"[{i + 1}/{len(variants)}] "):
            continue
        sides = ("new", "old") if i % 2 == 0 else ("old", "new")
        rows[variant.name] = {side: run_side(bench, variant, args.seed, teacher, side, root) for side in sides}
        recorded = spread(bench.csv, variant.name)
        new = rows[variant.name]["new"]["top1_last"]
        rows[variant.name]["recorded_spread"] = recorded
        rows[variant.name]["new_within_spread"] = None if recorded is None else recorded[0] <= new <= recorded[1]
        rows[variant.name]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        totals = {side: sum(r[side]["wall_seconds"] for r in rows.values()) for side in ("new", "old")}
        atomic_write_json(Path(args.out), {
            **identity, "rows_done": len(rows), "rows": rows, "wall_seconds": totals,
            "ratio_new_to_old": totals["new"] / totals["old"],
            "command": " ".join(["bench/suite_speed.py", *sys.argv[1:]])})
        print(f"[{i + 1}/{len(variants)}] {variant.name}: new {rows[variant.name]['new']['wall_seconds']:.0f} s, "
              f"old {rows[variant.name]['old']['wall_seconds']:.0f} s; so far {totals['new'] / totals['old']:.2f}x",
              flush=True)
    try:
        sitting.close()
    except SittingOver as exc:
        print(f"bench/suite_speed.py: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
