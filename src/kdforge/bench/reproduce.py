"""`kdforge bench reproduce SUITE --rows R --seeds S`: train recorded runs again into their run folders, where the
folders are missing (a new machine keeps a suite's table, not its weights), and check each against its recorded
line: training is deterministic for a config, a seed and a thread count, so a run trained again with the thread
count it was recorded with ends at the recorded top-1. The table is never changed; what needs weights (the
protocols page, curves) reads the folders."""

from __future__ import annotations

from pathlib import Path

from kdforge.bench.accuracy import AccuracyBench, read_rows
from kdforge.bench.suites import SUITES
from kdforge.errors import UserError


def reproduce(suite: str, rows: list[str], seeds: list[int], budget: str = "small", root: str | Path = "runs/bench",
              results: str | Path = "results", echo=print) -> list[dict]:
    """One entry per (row, seed) asked for: the recorded and the reproduced top-1 and whether they agree to the
    CSV's four decimals. A row or seed that the table does not hold is a one-line error before anything trains."""
    bench = AccuracyBench(SUITES.get(suite), budget, Path(root), Path(results), echo=lambda m: None)
    variants = {v.name: v for v in bench.variants(rows)}
    recorded = {(r["method"], int(r["seed"])): r for r in read_rows(bench.csv)}
    missing = [f"{row} seed {seed}" for row in rows for seed in seeds if (row, seed) not in recorded]
    if missing:
        raise UserError(f"{bench.csv} has no recorded {missing[0]}: reproduce re-trains recorded runs; record it "
                        f"with `kdforge bench accuracy {suite} --methods ROW`")
    done = []
    for row in rows:
        for seed in seeds:
            line = recorded[row, seed]
            threads = int(line["threads"]) if line.get("threads") else None
            replay = AccuracyBench(bench.suite, budget, Path(root), Path(results), threads, echo=lambda m: None)
            teacher = replay._teacher(variants[row]) if replay.uses_teacher(variants[row]) else None
            cfg, folder = replay.student_config(variants[row], seed, Path(teacher["folder"]) if teacher else None)
            summary = replay._train(cfg, folder, f"{row} seed {seed}")
            same = f"{summary['top1_last']:.4f}" == f"{float(line['top1_last']):.4f}"
            done.append({"row": row, "seed": seed, "recorded": float(line["top1_last"]),
                         "reproduced": summary["top1_last"], "identical": same, "threads": threads})
            echo(f"{suite} {row} seed {seed}: recorded {float(line['top1_last']):.2f}, trained again "
                 f"{summary['top1_last']:.2f} ({'identical' if same else 'DIFFERENT'}"
                 f"{f', {threads} thread(s)' if threads else ', thread count not recorded'}) in {folder}")
    return done
