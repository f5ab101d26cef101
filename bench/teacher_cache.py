"""Teacher-output cache: one `kd` epoch cold (teacher forward, outputs recorded) against the same epoch warm
(outputs replayed), resnet56 -> resnet20 on CIFAR-10 (JPEG), in one process.

    .venv/bin/python bench/teacher_cache.py [--threads 2] [--per-class N] [--out results/teacher_cache.json]

Timing needs no trained teacher: a randomly initialised resnet56 (saved once) does the same arithmetic. Each
epoch runs in a fresh run folder with the same seed; the cache lives in a temporary KDFORGE_CACHE, so the
first epoch is always cold. Wall time is the training loop's own (`train_seconds` of the summary).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=None, help="training images per class (default: all 5,000)")
    parser.add_argument("--out", default="results/teacher_cache.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kdforge-cache-bench-") as tmp:
        import torch

        from kdforge.config import MEASURED_PRECISION, load_config
        from kdforge.data.sources import cache_dir
        from kdforge.engine.pipeline import train
        from kdforge.fileio import atomic_write_json
        from kdforge.models import create_model

        torch.manual_seed(0)
        teacher = Path(tmp) / "resnet56.pt"
        torch.save({"model": create_model("resnet56", 10).state_dict()}, teacher)
        os.environ["KDFORGE_CACHE"] = str(Path(tmp) / "cache")
        data_cache = cache_dir()
        subset = f"data.train_per_class={args.per_class}" if args.per_class else "data.train_per_class=null"
        common = ["student=resnet20", "teacher=resnet56", "method=kd", f"teacher_checkpoint={teacher}", "epochs=1",
                  f"threads={args.threads}", "progress=false", "tensorboard=false", "teacher_cache=true", subset,
                  "eval_every=1", *MEASURED_PRECISION]  # float32, as results/teacher_cache.json was measured
        # the decoded CIFAR-10 arrays are cached under the real cache: link them so nothing is decoded twice
        real = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "kdforge"
        data_cache.mkdir(parents=True, exist_ok=True)
        for npz in real.glob("cifar10-jpeg-*.npz"):
            (data_cache / npz.name).symlink_to(npz)
        runs = {}
        for name in ("cold", "warm"):
            summary = train(load_config("cifar10-cpu-student", common + [f"out={Path(tmp) / name}"]), echo=print)
            runs[name] = {"train_seconds": summary["train_seconds"], "teacher_cache": summary["teacher_cache"],
                          "images_per_second": summary["train_images_per_second"]}
        ratio = runs["cold"]["train_seconds"] / runs["warm"]["train_seconds"]
        result = {"setting": {**vars(args), "pair": "resnet56 -> resnet20", "method": "kd", "batch": 128},
                  "torch": torch.__version__, "runs": runs, "cold_over_warm": ratio}
        atomic_write_json(args.out, result)
        print(f"kd epoch, resnet56 -> resnet20: cold {runs['cold']['train_seconds']:.1f} s, warm "
              f"{runs['warm']['train_seconds']:.1f} s, cold/warm {ratio:.2f}x -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
