"""A timm CNN teacher distilling a timm ViT student on the CIFAR-10 (JPEG) CPU data, on a short schedule:
the teacher (ce), then the `ce`, `kd` and `ckd` students, one seed each. Writes results/timm_pair.json.

    .venv/bin/python bench/timm_pair.py [--teacher timm:convnext_atto] [--student timm:vit_tiny_patch16_224]
        [--per-class 200] [--teacher-epochs 15] [--student-epochs 15] [--threads 1]

A short schedule on a small subset: the figures say that the pair trains and distils end to end, not how well
these architectures do on CIFAR-10 (a ViT with 16-pixel patches sees a 32x32 image as 4 tokens).
"""

from __future__ import annotations

import argparse
import tempfile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="timm:convnext_atto")
    parser.add_argument("--student", default="timm:vit_tiny_patch16_224")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--student-epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/timm_pair.json")
    args = parser.parse_args()
    from kdforge.config import MEASURED_PRECISION, load_config
    from kdforge.engine.pipeline import train
    from kdforge.fileio import atomic_write_json

    common = [f"data.train_per_class={args.per_class}", f"threads={args.threads}", "progress=false",
              "tensorboard=false", "data.batch_size=64", "optim.lr=0.05", *MEASURED_PRECISION]  # float32, as recorded
    result = {"setting": vars(args)}
    with tempfile.TemporaryDirectory(prefix="kdforge-timm-") as tmp:
        teacher = train(load_config("cifar10-cpu-teacher", common + [
            f"student={args.teacher}", f"epochs={args.teacher_epochs}", f"out={tmp}/teacher"]), echo=lambda m: None)
        result["teacher_top1"] = teacher["top1_last"]
        for method in ("ce", "kd", "ckd"):
            extra = [f"teacher={args.teacher}", f"teacher_checkpoint={tmp}/teacher"] if method != "ce" else []
            summary = train(load_config("cifar10-cpu-student", common + extra + [
                f"student={args.student}", f"method={method}", f"epochs={args.student_epochs}",
                f"out={tmp}/{method}"]), echo=lambda m: None)
            result[f"{method}_top1"] = summary["top1_last"]
            result[f"{method}_train_top1"] = summary.get("train_top1")
            atomic_write_json(args.out, result)
    print(", ".join(f"{k} {v:.2f}" for k, v in result.items() if k.endswith("top1") and v is not None),
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
