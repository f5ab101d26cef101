"""The frozen teacher's forward alone: plain eval mode under no_grad (what a teacher forward costs without kdforge's
measures) against the BatchNorm-folded copy under inference_mode (what the trainer runs), and the folded copy in
channels_last. The variants are interleaved and the medians compared within one run. Writes one JSON.

    .venv/bin/python bench/teacher_forward_speed.py [--teacher resnet56] [--batch 256] [--reps 15] [--threads 1]
        [--out results/teacher_forward_speed.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet56")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/teacher_forward_speed.json")
    args = parser.parse_args()
    import torch

    from kdforge.fileio import atomic_write_json
    from kdforge.models import create_model
    from kdforge.models.fold import fold_batchnorm

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = create_model(args.teacher, 100)
    with torch.no_grad():  # BatchNorm statistics as a trained teacher has them (not the identity of a fresh one)
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    teacher.eval().requires_grad_(False)
    x = torch.randn(args.batch, 3, 32, 32)
    folded, count = fold_batchnorm(teacher, x[:2])
    folded_cl = fold_batchnorm(teacher, x[:2])[0].to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def plain():
        with torch.no_grad():
            return teacher(x)

    def lean():
        with torch.inference_mode():
            return folded(x)

    def lean_cl():
        with torch.inference_mode():
            return folded_cl(x_cl)

    variants = {"eval_no_grad": plain, "folded_inference_mode": lean, "folded_inference_mode_channels_last": lean_cl}
    with torch.no_grad():
        diff = float((plain() - lean()).abs().max())
    times = {name: [] for name in variants}
    for _ in range(2):  # warm-up
        for fn in variants.values():
            fn()
    for _ in range(args.reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {"setting": vars(args), "torch": torch.__version__, "folded_batchnorms": count,
              "max_abs_logit_difference": diff, "median_seconds": median,
              "folded_over_plain": median["folded_inference_mode"] / median["eval_no_grad"],
              "channels_last_over_folded": median["folded_inference_mode_channels_last"] / median["folded_inference_mode"]}
    atomic_write_json(args.out, result)
    print(f"{args.teacher}, batch {args.batch}, {args.threads} thread(s): plain {median['eval_no_grad'] * 1000:.1f} ms, "
          f"folded + inference_mode {median['folded_inference_mode'] * 1000:.1f} ms "
          f"({result['folded_over_plain']:.2f}x), channels_last {result['channels_last_over_folded']:.2f}x of folded; "
          f"{count} BatchNorms folded, max |logit diff| {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
