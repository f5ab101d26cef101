"""`kdforge demo`: train a teacher on the digits data, distil a small MLP student with every registered
method, and print the table. Offline, a couple of minutes on 2 CPU cores."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch

from kdforge.bench.suites import SUITES
from kdforge.config import TrainConfig, apply_overrides, from_dict, load_raw
from kdforge.engine.pipeline import train
from kdforge.errors import ConfigError, UserError
from kdforge.methods import METHODS

MARKER = ".kdforge-demo"


def _config(preset: str, out: Path, threads: int, extra: list[str]) -> TrainConfig:
    raw = apply_overrides(load_raw(preset), [f"out={out}", f"threads={threads}", "tensorboard=false", *extra])
    return from_dict(TrainConfig, raw)


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"{out} exists and is not a demo folder; pass --out to an empty or demo folder")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / MARKER).touch()


def run_demo(out="runs/demo", threads: int | None = None, student_epochs: int | None = None, echo=print) -> list[dict]:
    out = Path(out)
    threads = threads or max(1, min(2, torch.get_num_threads()))
    _prepare(out)
    quiet = lambda message: None  # noqa: E731 - per-epoch lines would drown the table
    start = time.perf_counter()
    echo(f"kdforge demo: digits (8x8 grayscale, fixed stratified 70/30 split), teacher cnn8, "
         f"student mlp8 (a 1-hidden-layer MLP), {threads} threads")
    teacher = train(_config("digits-teacher", out / "teacher", threads, []), echo=quiet)
    echo(f"  teacher cnn8 trained: top-1 {teacher['top1_last']:.2f}%  ({teacher['wall_seconds']:.1f} s)")
    rows, skipped = [], []
    for variant in SUITES.get("digits").variants(METHODS.names()):  # every method, as the digits suite runs it
        name = variant.name
        extra = [f"method={variant.method}", *variant.overrides]
        if student_epochs:
            extra.append(f"epochs={student_epochs}")
        preset = variant.preset or "digits-student"
        try:
            cfg = _config(preset, out / name, threads, extra)
            if METHODS.get(cfg.method).uses_teacher(cfg.method_args):
                cfg = _config(preset, out / name, threads, extra + [f"teacher_checkpoint={out / 'teacher'}"])
            summary = train(cfg, echo=quiet)
        except ConfigError as exc:  # e.g. a feature-map method with the MLP student
            skipped.append((name, str(exc)))
            echo(f"  {name:<12} n/a: {exc}")
            continue
        summary["row"] = name
        rows.append(summary)
        echo(f"  {name:<12} top-1 {summary['top1_last']:6.2f}%  ({summary['wall_seconds']:.1f} s)")
    echo("")
    echo(format_table(teacher, rows))
    for name, reason in skipped:
        echo(f"not applicable to this student: {name} ({reason.split(';')[0]})")
    try:
        from kdforge.plots import plot_runs

        curves = plot_runs([out / "teacher"] + [out / r["row"] for r in rows], out / "curves.png",
                           "kdforge demo: digits")
        echo(f"training curves: {curves}")
    except UserError as exc:  # matplotlib missing: the table is the demo's result
        echo(f"(no curves: {exc})")
    echo(f"\ntotal {time.perf_counter() - start:.0f} s; runs, metrics and checkpoints in {out}/")
    return rows


def format_table(teacher: dict, rows: list[dict]) -> str:
    base = next((r["top1_last"] for r in rows if r["method"] == "ce"), None)
    w = max([len("method")] + [len(r.get("row", r["method"])) for r in rows])  # the longest row name sets the column
    lines = [
        f"| {'model':<14} | {'method':<{w}} | {'top-1 last':>10} | {'top-1 best (test)':>17} | {'vs ce':>6} | {'seconds':>7} |",
        f"|{'-' * 16}|{'-' * (w + 2)}|{'-' * 12}|{'-' * 19}|{'-' * 8}|{'-' * 9}|",
        f"| {'teacher cnn8':<14} | {'ce':<{w}} | {teacher['top1_last']:>10.2f} | {teacher['top1_best_test']:>17.2f} | "
        f"{'':>6} | {teacher['wall_seconds']:>7.1f} |",
    ]
    for r in rows:
        delta = f"{r['top1_last'] - base:+.2f}" if base is not None and r["method"] != "ce" else ""
        lines.append(f"| {'student mlp8':<14} | {r.get('row', r['method']):<{w}} | {r['top1_last']:>10.2f} | "
                     f"{r['top1_best_test']:>17.2f} | {delta:>6} | {r['wall_seconds']:>7.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    run_demo(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
