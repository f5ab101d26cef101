"""torchrun on CPU against one process: the `fmnist-cpu` suite's `kd` cell (teacher cnn28, student cnn28_small,
6 epochs, global batch 64) trained in a single process and as 2 processes (gloo), for the same seeds.

    .venv/bin/python bench/ddp_check.py [--out results/ddp_check.json]

The suite's cached teacher is used (trained first if absent). Reports every run's top-1 and wall time and the difference
of the seed means (target: within 0.5 points).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from kdforge.bench.accuracy import AccuracyBench  # noqa: E402
from kdforge.bench.suites import SUITES  # noqa: E402
from kdforge.fileio import atomic_write_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/ddp-check")
    parser.add_argument("--out", default="results/ddp_check.json")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    bench = AccuracyBench(SUITES.get("fmnist-cpu"), threads=1)
    teacher = bench._teacher()
    kd = next(v for v in bench.variants(["kd"]))
    cfg, _ = bench.student_config(kd, 0, Path(teacher["folder"]))
    common = ["fmnist-cpu-student", "method=kd", f"teacher_checkpoint={cfg.teacher_checkpoint}", "threads=1",
              "progress=false", "tensorboard=false"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    results = {}
    # torchrun's own per-launch log folder beside the runs (by default it leaves one in the system's temporary folder)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                f"--log-dir={Path(args.root) / 'torchrun-logs'}", "-m", "kdforge", "train"]
    results: dict[str, list] = {"single": [], "torchrun-2": []}
    for seed in range(args.seeds):
        for name, launcher in (("single", [sys.executable, "-m", "kdforge", "train"]), ("torchrun-2", torchrun)):
            folder = Path(args.root) / f"{name}-s{seed}"
            summary_path = folder / "summary.json"
            if not summary_path.exists():
                resume = ["--resume"] if (folder / "checkpoint.pt").exists() else []
                done = subprocess.run(launcher + common + [f"seed={seed}", f"out={folder}"] + resume, env=env,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stderr[-2000:])
                    return done.returncode
            s = json.loads(summary_path.read_text())
            results[name].append({"seed": seed, "top1_last": s["top1_last"], "wall_seconds": s["wall_seconds"],
                                  "world_size": s["world_size"]})
    means = {name: statistics.fmean(r["top1_last"] for r in runs) for name, runs in results.items()}
    diff = means["torchrun-2"] - means["single"]
    # BatchNorm normalises over each process's 32 images, not the global 64 (SyncBatchNorm is GPU-only), so
    # single runs differ by a little more than rounding; the seed mean is the fair comparison
    record = {"cell": "fmnist-cpu kd", "global_batch": cfg.data.batch_size, "epochs": cfg.epochs, "runs": results,
              "mean_top1_last": means, "difference": diff, "within_half_point": abs(diff) <= 0.5}
    atomic_write_json(args.out, record)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
