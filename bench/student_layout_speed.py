"""The student's memory layout on CPU, the measurement behind `channels_last: auto`: one float32 eager training step
(forward, cross-entropy, backward, SGD step) of each zoo model in NCHW and in channels_last, the two layouts
taking turns round by round (so a busy machine slows them alike), medians compared in one run. Then each model
once more compiled in both layouts (`--compiled`), the case where `auto` keeps the contiguous layout.

    .venv/bin/python bench/student_layout_speed.py [--models cnn8,resnet8,...] [--threads 2] [--compiled]
        [--out results/student_layout_speed.json]
"""

from __future__ import annotations

import argparse
import sys

# run as a script, this folder is on the path: the step and its timing are student_step_speed's
from student_step_speed import make_step, median_step_seconds

DEFAULT_MODELS = "cnn8,cnn28_small,resnet8,resnet20,wrn_16_2,vgg8,MobileNetV2,ShuffleV2"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per layout and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compiled", action="store_true", help="also time both layouts compiled")
    parser.add_argument("--out", default="results/student_layout_speed.json")
    args = parser.parse_args()
    import torch

    from kdforge.engine.models import MODELS
    from kdforge.fileio import atomic_write_json

    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS.names()]
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; see kdforge list models", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = {}
    for name in models:
        row = {}
        for compiled in (False, True) if args.compiled else (False,):
            mode = "compiled" if compiled else "eager"
            t = median_step_seconds({layout: make_step(name, {"amp": False, "channels_last": layout == "channels_last",
                                                             "compile": compiled}, args.batch)
                                     for layout in ("contiguous", "channels_last")}, args.rounds, args.steps)
            row[mode] = {"contiguous_ms": 1000 * t["contiguous"], "channels_last_ms": 1000 * t["channels_last"],
                         "channels_last_speed": t["contiguous"] / t["channels_last"]}
            print(f"{name:14s} {mode:8s} contiguous {row[mode]['contiguous_ms']:7.1f} ms  channels_last "
                  f"{row[mode]['channels_last_ms']:7.1f} ms  {row[mode]['channels_last_speed']:.2f}x", flush=True)
        rows[name] = row
        atomic_write_json(args.out, {"batch": args.batch, "threads": args.threads, "rounds": args.rounds,
                                     "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                     "torch": torch.__version__, "models": rows})
    eager = [r["eager"]["channels_last_speed"] for r in rows.values()]
    print(f"eager channels_last speed over contiguous: {min(eager):.2f}x to {max(eager):.2f}x -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
