"""Step cost of each detection method against the student's own training step plus the teacher's forward on the
same batch (the teacher's backbone and box head on the student's sampled proposals: the least teacher work any
RoI-logit method needs). The suite's detectors (detection-cpu presets: resnet20-FPN teacher, resnet8-FPN student)
on the suite's canvases; every method runs the same fixed batches, methods interleaved round by round, medians
compared within one run. Writes one JSON and prints a table.

    .venv/bin/python bench/detection_step_cost.py [--steps 12] [--threads 2] [--out results/detection_step_cost.json]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", default="runs/bench")
    parser.add_argument("--out", default="results/detection_step_cost.json")
    args = parser.parse_args()
    import torch

    from kdforge.bench.detection import METHODS, ensure_data
    from kdforge.config import load_config
    from kdforge.detection.data import load_detection_data
    from kdforge.detection.distill import DetectionDistiller
    from kdforge.detection.task import detector_args
    from kdforge.fileio import atomic_write_json
    from kdforge.models.detection import build_detector, roi_class_logits

    torch.set_num_threads(args.threads)
    root = ensure_data(Path(args.root))
    student_cfg = load_config("detection-cpu-student", [f"data.root={root}"])
    teacher_cfg = load_config("detection-cpu-teacher", [f"data.root={root}"])
    data = load_detection_data(student_cfg.data)
    order, flips = data.train.epoch_plan(train=True, seed=0, epoch=0)
    b = student_cfg.data.batch_size
    batches = [data.train.batch(order[i * b:(i + 1) * b], flips[i * b:(i + 1) * b]) for i in range(args.steps + 2)]
    torch.manual_seed(0)
    size, nc = student_cfg.data.image_size, data.num_classes
    proto = build_detector(student_cfg.student, nc, size, **detector_args(student_cfg))
    teacher = build_detector(teacher_cfg.student, nc, size, **detector_args(teacher_cfg)).eval().requires_grad_(False)
    runs = {}
    for method in METHODS:
        distiller = DetectionDistiller(None if method == "ce" else teacher, copy.deepcopy(proto), method).train()
        runs[method] = (distiller, torch.optim.SGD(distiller.parameters(), lr=0.01, momentum=0.9))
    times = {m: [] for m in [*METHODS, "teacher_forward"]}
    for i, batch in enumerate(batches):
        for method, (distiller, opt) in runs.items():
            start = time.perf_counter()
            out, _ = distiller(batch.images, batch.targets)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            elapsed = time.perf_counter() - start
            if method == "ce":  # the teacher's forward on the ce student's own proposals of this batch
                record = distiller.taps.record
                start = time.perf_counter()
                with torch.no_grad():
                    features = teacher.backbone(record["images"].tensors)
                    roi_class_logits(teacher, features, record["proposals"], record["image_sizes"])
                teacher_seconds = time.perf_counter() - start
            if i >= 2:  # two warm-up rounds
                times[method].append(elapsed)
                if method == "ce":
                    times["teacher_forward"].append(teacher_seconds)
    median = {k: statistics.median(v) for k, v in times.items()}
    reference = median["ce"] + median["teacher_forward"]
    result = {"threads": args.threads, "steps": args.steps, "batch": b, "canvas": size,
              "student": student_cfg.student, "teacher": teacher_cfg.student,
              "median_seconds": median, "reference_seconds": reference,
              "ratio_to_student_step_plus_teacher_forward": {m: median[m] / reference for m in METHODS if m != "ce"}}
    atomic_write_json(Path(args.out), result)
    print(f"student ce step {median['ce'] * 1000:.0f} ms + teacher forward {median['teacher_forward'] * 1000:.0f} ms "
          f"= {reference * 1000:.0f} ms (batch {b}, {args.threads} threads, median of {args.steps})")
    for m, r in result["ratio_to_student_step_plus_teacher_forward"].items():
        print(f"  {m:<14} {median[m] * 1000:7.0f} ms  {r:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
