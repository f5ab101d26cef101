"""`compile=true` against eager: one `kd` training step (teacher forward + student step through the trainer's
taps), resnet56 -> resnet20, batch 64, 32x32 inputs, fixed random data. Reports the time to the first step
(compilation included) and the median of the following steps; eager and compiled steps are interleaved.

    .venv/bin/python bench/compile_speed.py [--steps 20] [--threads 2] [--out results/compile_speed.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kdforge.data.inmemory import Batch  # noqa: E402
from kdforge.fileio import atomic_write_json  # noqa: E402
from kdforge.methods import METHODS, MethodContext, StepState, build_method  # noqa: E402
from kdforge.models import TappedModel, create_model  # noqa: E402


class KdStep:
    def __init__(self, compiled: bool, batch: Batch, teacher_name: str, student_name: str):
        torch.manual_seed(0)
        self.batch = batch
        self.teacher = create_model(teacher_name, 10).eval().requires_grad_(False)
        self.student = create_model(student_name, 10)
        if compiled:  # what the trainer does with compile=true
            self.student.compile()
            self.teacher.compile()
        cls = METHODS.get("kd")
        self.method = build_method("kd", {}, MethodContext(num_classes=10, student=self.student, teacher=self.teacher))
        self.student_view = TappedModel(self.student, cls.student_taps)
        self.teacher_view = TappedModel(self.teacher, cls.teacher_taps)
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def __call__(self) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            t_out = self.teacher_view(self.batch.input)
        s_out = self.student_view(self.batch.input)
        loss = sum(self.method(self.batch, s_out, t_out, StepState(0, 0, 0.0)).values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet56")
    parser.add_argument("--student", default="resnet20")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/compile_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = Batch(torch.arange(64), torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)))
    steps = {"eager": KdStep(False, batch, args.teacher, args.student),
             "compiled": KdStep(True, batch, args.teacher, args.student)}
    first = {name: step() for name, step in steps.items()}  # compilation happens here
    for step in steps.values():  # a second warm-up: the backward graph of a compiled step settles
        step()
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            times[name].append(step())
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {"setting": vars(args), "torch": torch.__version__, "first_step_seconds": first,
              "median_step_seconds": median, "eager_over_compiled": median["eager"] / median["compiled"],
              "break_even_steps": (first["compiled"] - first["eager"]) / max(median["eager"] - median["compiled"], 1e-9)}
    atomic_write_json(args.out, result)
    print(f"kd step {args.teacher} -> {args.student}, batch 64, {args.threads} threads: eager "
          f"{median['eager'] * 1000:.0f} ms, compiled {median['compiled'] * 1000:.0f} ms "
          f"({result['eager_over_compiled']:.2f}x); first compiled step {first['compiled']:.0f} s; break-even after "
          f"{result['break_even_steps']:.0f} steps -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
