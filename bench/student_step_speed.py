"""A suite student's training step (forward, cross-entropy, backward, SGD step) in each numeric setting the trainer
offers on this device: float32 or bf16 autocast (`amp`), NCHW or channels_last, eager or compiled. The settings
take turns round by round (so a busy shared machine slows them alike) and the medians are compared with
float32 eager, in one run. Writes one JSON. What it answers: how much faster a suite's rows would train in bf16
and channels_last on a CPU with bf16 matrix units (AMX), before any accuracy is measured.

    .venv/bin/python bench/student_step_speed.py [--model resnet8] [--batch 64] [--rounds 10] [--threads 1]
        [--no-compile] [--out results/student_step_speed.json]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time


def settings(compile_too: bool) -> list[dict]:
    return [{"amp": amp, "channels_last": cl, "compile": comp}
            for amp, cl, comp in itertools.product((False, True), (False, True), (False, True) if compile_too else (False,))]


def label(s: dict) -> str:
    return "+".join(["bf16" if s["amp"] else "fp32"] + (["channels_last"] if s["channels_last"] else [])
                    + (["compiled"] if s["compile"] else []))


def make_step(model_name: str, s: dict, batch: int):
    import torch

    from kdforge.engine.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, 10, 3, 32)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if s["channels_last"]:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if s["compile"] else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s["amp"]):
            loss = torch.nn.functional.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def median_step_seconds(steps: dict, rounds: int, per_round: int) -> dict[str, float]:
    """Each named step's median time: all warmed up (compilation included) first, then taking turns round by round,
    so that a busy machine slows them alike."""
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting and round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="eager settings only")
    parser.add_argument("--out", default="results/student_step_speed.json")
    args = parser.parse_args()
    import torch

    from kdforge.fileio import atomic_write_json

    torch.set_num_threads(args.threads)
    chosen = settings(not args.no_compile)
    steps = {label(s): make_step(args.model, s, args.batch) for s in chosen}
    medians = median_step_seconds(steps, args.rounds, args.steps)
    rows = {name: {"median_step_seconds": m, "images_per_second": args.batch / m,
                   "speed_over_fp32_eager": medians["fp32"] / m} for name, m in medians.items()}
    isa = torch.backends.cpu.get_cpu_capability()
    atomic_write_json(args.out, {"model": args.model, "batch": args.batch, "threads": args.threads,
                                 "rounds": args.rounds, "cpu_capability": isa, "torch": torch.__version__,
                                 "settings": rows})
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["speed_over_fp32_eager"]):
        print(f"{name:32s} {r['images_per_second']:7.0f} img/s  {r['speed_over_fp32_eager']:.2f}x fp32 eager")
    print(f"({isa}; {args.threads} thread(s), batch {args.batch}) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
