"""Per-step cost of each distillation method relative to the unavoidable work of distillation:
a student cross-entropy training step plus a teacher forward pass.

    .venv/bin/python bench/step_overhead.py [--methods kd,ckd,dkd,crd] [--steps 30] [--threads 2]

Setting: batch 64, 32x32 inputs, 10 classes, teacher resnet56 -> student resnet20 (override with
--teacher/--student), CRD with a 20,000-entry bank (the CPU preset's training set); with --methods ickd --dataset-size 50000 the
IC-KD offline step gathers from a precomputed neighbour table over 50,000 entries (build time reported). The methods are
timed round-robin, one step each per round, so that load changes on a shared machine hit them all
alike; the figure is the median of --steps steps after --warmup rounds. Writes results/step_overhead.json.

With --warm-cache the teacher's outputs are replayed from a recorded teacher-output cache epoch (the real
`TeacherCache`, float16 files in a temporary folder, read by the batch's dataset indices) instead of a teacher
forward, and the baseline is the student cross-entropy step alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdforge.data.inmemory import Batch  # noqa: E402
from kdforge.engine.teacher_cache import TeacherCache  # noqa: E402
from kdforge.fileio import atomic_write_json  # noqa: E402
from kdforge.memory.incontext import neighbour_table  # noqa: E402
from kdforge.methods import MethodContext, StepState, build_method  # noqa: E402
from kdforge.models import (  # noqa: E402
    ModelOutput,
    TappedModel,  # noqa: E402
    create_model,
)


def recorded_cache(folder: Path, teacher, batch: Batch, size: int, classes: int) -> TeacherCache:
    """A teacher-output cache holding one finished epoch of `size` samples (values random: replay cost does
    not depend on them), opened for replay as a training run opens it."""
    width = TappedModel(teacher, ("embedding",))(batch.input).features["embedding"].shape[1]
    cache = TeacherCache(folder, "step-bench", size, size, "float16", torch.device("cpu"), log=lambda *_: None)
    cache.begin_epoch(0, 0)
    gen = torch.Generator().manual_seed(2)
    for chunk in torch.arange(size).split(4096):
        cache.record(chunk, ModelOutput(torch.randn(len(chunk), classes, generator=gen),
                                        {"embedding": torch.randn(len(chunk), width, generator=gen)}))
    cache.end_epoch(0)
    if not cache.begin_epoch(0, 0):
        raise RuntimeError("the recorded cache epoch did not replay")
    return cache


def fill_bank_and_table(method, classes: int, size: int) -> float:
    """IC-KD offline: a full bank of random unit embeddings and logits, then its neighbour table, built the
    way training builds it (class by class, exact). Returns the table's build time in seconds."""
    gen = torch.Generator().manual_seed(1)
    bank = method.bank
    labels = torch.randint(0, classes, (size,), generator=gen)
    bank.write(torch.arange(size), torch.randn(size, bank.embeddings.shape[1], generator=gen),
               torch.randn(size, classes, generator=gen), labels, gather=False)
    start = time.perf_counter()
    method.table = neighbour_table(bank.embeddings, bank.labels, method.cfg.k_pos, method.cfg.k_neg)
    return time.perf_counter() - start


def parse_spec(spec: str) -> tuple[str, dict]:
    """`refilled:stage=2` -> ("refilled", {"stage": 2}): a method with the arguments it is timed with."""
    import yaml

    name, _, rest = spec.partition(":")
    # values read as YAML scalars, as key=value overrides are: true, 2, 0.5, stage names
    return name, {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in rest.split(";") if item)}


class Runner:
    """One method's training step on fixed random data (the step the trainer runs, without I/O)."""

    def __init__(self, name: str, teacher, student_name: str, batch: Batch, train_labels: torch.Tensor, classes: int,
                 cache: TeacherCache | None = None):
        dataset_size = len(train_labels)
        torch.manual_seed(0)
        self.name = name
        self.cache = cache
        self.student = create_model(student_name, classes)
        self.teacher = teacher
        self.batch = batch
        if name == "baseline":
            self.method = None
            self.student_view, self.teacher_view = TappedModel(self.student, ()), TappedModel(teacher, ())
            params = list(self.student.parameters())
        else:
            method, args = parse_spec(name)
            ctx = MethodContext(num_classes=classes, student=self.student, teacher=teacher, dataset_size=dataset_size,
                                train_labels=train_labels, epochs=30, steps_per_epoch=dataset_size // batch.target.shape[0],
                                build_student=lambda: create_model(student_name, classes))
            self.method = build_method(method, args, ctx)
            if method == "refilled" and self.method.cfg.stage == "2":  # centres come from `prepare` in training
                width = TappedModel(teacher, ("embedding",))(batch.input[:2]).features["embedding"].shape[1]
                self.method.centres = F.normalize(torch.randn(classes, width), dim=1)
            if method == "ickd" and self.method.cfg.paradigm == "offline":
                self.table_seconds = fill_bank_and_table(self.method, classes, dataset_size)
            self.student_view = TappedModel(self.student, self.method.student_taps)
            self.teacher_view = TappedModel(teacher, self.method.teacher_taps)
            params = list(self.student.parameters()) + list(self.method.parameters())
        self.optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.step_index = 0

    def step(self) -> float:
        start = time.perf_counter()
        x, y = self.batch.input, self.batch.target
        if self.cache is not None:
            t_out = None if self.method is None else self.cache.lookup(self.batch.index)
        else:
            with torch.no_grad():
                t_out = self.teacher_view(x)
        s_out = self.student_view(x)
        if self.method is None:
            loss = F.cross_entropy(s_out.logits, y)
        else:
            loss = sum(self.method(self.batch, s_out, t_out, StepState(30, self.step_index, 30.0)).values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.method is not None:
            self.method.after_step()  # as the trainer: memories are written once the optimiser has stepped
        self.step_index += 1
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="kd,ckd,dkd,crd")
    parser.add_argument("--teacher", default="resnet56")
    parser.add_argument("--student", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dataset-size", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warm-cache", action="store_true",
                        help="replay teacher outputs from a recorded cache; baseline = student CE step alone")
    parser.add_argument("--out", default="results/step_overhead.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = create_model(args.teacher, args.classes).eval().requires_grad_(False)
    batch = Batch(torch.randperm(args.dataset_size)[: args.batch_size], torch.randn(args.batch_size, 3, 32, 32),
                  torch.randint(0, args.classes, (args.batch_size,)))
    names = ["baseline"] + [m for m in args.methods.split(",") if m]
    tmp = tempfile.TemporaryDirectory(prefix="kdforge-step-cache-")
    cache = recorded_cache(Path(tmp.name), teacher, batch, args.dataset_size, args.classes) if args.warm_cache else None
    # labels by dataset index, the batch's among them, for methods that sample by class (CRD's other-class negatives)
    train_labels = torch.randint(0, args.classes, (args.dataset_size,))
    train_labels[batch.index] = batch.target
    runners = [Runner(n, teacher, args.student, batch, train_labels, args.classes, cache) for n in names]
    times = {n: [] for n in names}
    for round_index in range(args.warmup + args.steps):
        for runner in runners:
            elapsed = runner.step()
            if round_index >= args.warmup:
                times[runner.name].append(elapsed)
    base = statistics.median(times["baseline"])
    result = {"setting": vars(args), "torch": torch.__version__,
              "median_step_seconds": {n: statistics.median(t) for n, t in times.items()},
              "ratio_to_baseline": {n: statistics.median(t) / base for n, t in times.items()},
              "ickd_table_build_seconds": {r.name: r.table_seconds for r in runners if hasattr(r, "table_seconds")}}
    atomic_write_json(args.out, result)
    print(f"{args.teacher} -> {args.student}, batch {args.batch_size}, {args.threads} threads, "
          f"median of {args.steps} steps; baseline = student CE step"
          + (" (teacher outputs replayed from the cache)" if args.warm_cache else " + teacher forward"))
    for n in names:
        print(f"  {n:<28} {result['median_step_seconds'][n] * 1000:8.1f} ms   {result['ratio_to_baseline'][n]:5.3f}x")
    for name, seconds in result["ickd_table_build_seconds"].items():
        print(f"  {name} neighbour table for {args.dataset_size} entries "
              f"(d {runners[names.index(name)].method.bank.embeddings.shape[1]}): {seconds:.1f} s")
    print(f"-> {args.out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
