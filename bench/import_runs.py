"""Adopt finished runs made outside `kdforge bench accuracy` (e.g. by bench/cifar10_cpu_preset.sh) as a suite's
rows, so that the same training is not paid for twice.

    .venv/bin/python bench/import_runs.py SUITE TEACHER_RUN [STUDENT_RUN=METHOD_ROW ...] [--seed 0]

The teacher run must have exactly the suite teacher's settings and every student run exactly the settings
the suite gives that row and seed (apart from where the teacher lives); anything else is refused. Runs are
copied into the bench's folders (runs/bench/...); the next `kdforge bench accuracy SUITE` call reads them as
finished and adds their rows to results/SUITE.csv.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kdforge.bench.accuracy import AccuracyBench, _settings  # noqa: E402
from kdforge.bench.suites import SUITES  # noqa: E402
from kdforge.config import to_dict  # noqa: E402
from kdforge.fileio import atomic_write_json  # noqa: E402


def adopt(source: Path, target: Path, expected: dict, ignore: tuple[str, ...] = ()) -> str:
    summary = json.loads((source / "summary.json").read_text())
    have = {k: v for k, v in _settings(summary["config"]).items() if k not in ignore}
    want = {k: v for k, v in _settings(expected).items() if k not in ignore}
    if have != want:
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        return f"refused {source}: settings differ in {', '.join(diff)}"
    if target.exists():
        return f"kept {target} (already there)"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock", "*.tmp"))
    summary["config"] = expected
    summary["imported_from"] = str(source)
    atomic_write_json(target / "summary.json", summary)
    return f"adopted {source} -> {target}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite")
    parser.add_argument("teacher")
    parser.add_argument("students", nargs="*", help="RUN_FOLDER=ROW, e.g. runs/cifar10-cpu/student-kd=kd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="runs/bench")
    args = parser.parse_args()
    bench = AccuracyBench(SUITES.get(args.suite), root=Path(args.root))
    t_cfg, t_folder = bench.teacher_config()
    print(adopt(Path(args.teacher), t_folder, to_dict(t_cfg)))
    rows = {v.name: v for v in bench.variants(None)}
    for item in args.students:
        folder, _, row = item.partition("=")
        s_cfg, s_folder = bench.student_config(rows[row], args.seed, t_folder)
        print(adopt(Path(folder), s_folder, to_dict(s_cfg), ignore=("teacher_checkpoint",)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
