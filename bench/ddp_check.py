"""torchrun on CPU against one process: the `fmnist-cpu` suite's `kd` cell (teacher cnn28, student cnn28_small,
6 epochs, global batch 64) trained once in a single process and once as 2 processes (gloo), same seed.

    .venv/bin/python bench/ddp_check.py [--out results/ddp_check.json]

The suite's cached teacher is used (trained first if absent). Reports both top-1 figures and their difference
(target: within 0.5 points) and both wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kdforge.bench.accuracy import AccuracyBench  # noqa: E402
from kdforge.bench.suites import SUITES  # noqa: E402
from kdforge.fileio import atomic_write_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/ddp-check")
    parser.add_argument("--out", default="results/ddp_check.json")
    args = parser.parse_args()
    bench = AccuracyBench(SUITES.get("fmnist-cpu"), threads=1)
    teacher = bench._teacher()
    kd = next(v for v in bench.variants(["kd"]))
    cfg, _ = bench.student_config(kd, 0, Path(teacher["folder"]))
    common = ["fmnist-cpu-student", "method=kd", f"teacher_checkpoint={cfg.teacher_checkpoint}", "threads=1",
              "progress=false", "tensorboard=false"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    results = {}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "kdforge",
                "train"]
    # BatchNorm sees 32 images per process instead of 64; sync_batchnorm=true restores the global batch's statistics
    for name, launcher, extra in (("single", [sys.executable, "-m", "kdforge", "train"], []),
                                  ("torchrun-2", torchrun, []),
                                  ("torchrun-2-syncbn", torchrun, ["sync_batchnorm=true"])):
        folder = Path(args.root) / name
        summary_path = folder / "summary.json"
        if not summary_path.exists():
            resume = ["--resume"] if (folder / "checkpoint.pt").exists() else []
            done = subprocess.run(launcher + common + extra + [f"out={folder}"] + resume, env=env, capture_output=True,
                                  text=True)
            if done.returncode != 0:
                print(done.stderr[-2000:])
                return done.returncode
        s = json.loads(summary_path.read_text())
        results[name] = {"top1_last": s["top1_last"], "wall_seconds": s["wall_seconds"], "world_size": s["world_size"]}
    diffs = {name: results[name]["top1_last"] - results["single"]["top1_last"]
             for name in ("torchrun-2", "torchrun-2-syncbn")}
    record = {"cell": "fmnist-cpu kd seed 0", "global_batch": cfg.data.batch_size, "epochs": cfg.epochs,
              "runs": results, "difference_to_single": diffs,
              "within_half_point": {name: abs(d) <= 0.5 for name, d in diffs.items()}}
    atomic_write_json(args.out, record)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
