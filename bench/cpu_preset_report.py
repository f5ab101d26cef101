"""The CPU-preset table, generated from the run folders that bench/cifar10_cpu_preset.sh wrote.

    .venv/bin/python bench/cpu_preset_report.py [--runs runs/cifar10-cpu] [--out results/cifar10-cpu-preset.md]

One seed (0) per method: a single run each, so differences under about a point are within run-to-run noise.
Also draws the training curves of every student (and ce vs kr) next to the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kdforge.fileio import atomic_write_text  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/cifar10-cpu")
    parser.add_argument("--out", default="results/cifar10-cpu-preset.md")
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    teacher = json.loads((runs / "teacher" / "summary.json").read_text())
    students = sorted((p for p in runs.glob("student-*") if (p / "summary.json").exists()), key=lambda p: p.name)
    rows = [json.loads((p / "summary.json").read_text()) for p in students]
    ce = next((r["top1_last"] for r in rows if r["method"] == "ce"), None)
    kd = next((r["top1_last"] for r in rows if r["method"] == "kd"), None)
    lines = [
        "# CIFAR-10 (JPEG) CPU preset — one seed", "",
        f"Teacher resnet20, 30 epochs: **{teacher['top1_last']:.2f} %** top-1 (last), {teacher['wall_seconds']:.0f} s wall. "
        "Students resnet8, 15 epochs, seed 0, 20,000 training images (2,000 per class), all 10,000 test images, "
        "batch 128, SGD lr 0.1 cosine, wd 5e-4. `best` is selected on the test split (no validation split in this "
        "preset). CIFAR-10 here is JPEG-recompressed: compare methods with each other, not with published CIFAR-10 "
        "numbers. Wall times were taken on a shared 2-core machine while other jobs ran: they are not speed figures.",
        "",
        "| method | top-1 last | top-1 best (test) | vs ce | vs kd | wall s | preset |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, p in zip(rows, students):
        vs_ce = f"{r['top1_last'] - ce:+.2f}" if ce is not None and r["method"] != "ce" else ""
        vs_kd = f"{r['top1_last'] - kd:+.2f}" if kd is not None and r["method"] not in ("ce", "kd") else ""
        preset = json.loads((p / "config.json").read_text())["config"]
        lines.append(f"| {r['method']} | {r['top1_last']:.2f} | {r['top1_best']:.2f} | {vs_ce} | {vs_kd} | "
                     f"{r['wall_seconds']:.0f} | method_args {json.dumps(preset['method_args'], sort_keys=True)} |")
    methods = " ".join(r["method"] for r in rows)
    lines += ["", f"Commands: `bash bench/cifar10_cpu_preset.sh {methods}`, then "
              "`.venv/bin/python bench/cpu_preset_report.py`."]
    atomic_write_text(out, "\n".join(lines) + "\n")
    try:
        from kdforge.plots import plot_runs

        plot_runs(students, out.with_suffix(".png"), "CIFAR-10 JPEG CPU preset: resnet20 -> resnet8")
        pair = [runs / "student-ce", runs / "student-kr"]
        if all((p / "summary.json").exists() for p in pair):
            for target in (runs / "student-kr" / "loss_vs_ce.png", out.parent / "cifar10-cpu-kr-vs-ce.png"):
                plot_runs(pair, target, "ce vs kr (resnet8): training loss and accuracy")
    except Exception as exc:  # the table is the result; a missing plotting library must not lose it
        print(f"(no plots: {exc})")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
