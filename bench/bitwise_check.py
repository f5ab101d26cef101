"""Bit-for-bit check of the training path: a small teacher, then a short deterministic run of several methods on
real Fashion-MNIST images; the SHA-256 of each trained student's (and method's) weights goes to a JSON file.
Run it before and after a refactor of the engine: with `--compare BEFORE.json` it exits 1 on any difference.

    .venv/bin/python bench/bitwise_check.py --out results/bitwise_after.json --compare results/bitwise_before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

METHODS = ("refilled", "ce", "kd", "dkd", "ckd", "crd", "ickd", "kr", "kr_kd", "dml", "fitnet", "reviewkd")
# refilled: stage 1 picks its checkpoint on a held-out split. kr, kr_kd and ickd: the defaults results/bitwise_before.json
# was recorded with (lambda_KR 0.1; both IC-KD terms), pinned so that a later change of a default is not an engine change
EXTRA = {"refilled": ["data.val_per_class=5"], "kr": ["method_args.kr_weight=0.1"],
         "kr_kd": ["method_args.kr_weight=0.1"], "ickd": ["method_args.picd_weight=1"]}
# float32, as the recorded digests were: amp=auto would pick bf16 on an AMX CPU or a GPU, a change of arithmetic that
# is not an engine change
COMMON = ["data.train_per_class=30", "data.batch_size=32", "deterministic=true", "threads=1", "progress=false",
          "tensorboard=false", "log_every=5", "amp=false"]


def weights_digest(state: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        digest.update(name.encode())
        if hasattr(value, "cpu"):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run_all(tmp: Path) -> dict:
    from kdforge.config import load_config
    from kdforge.engine.checkpoint import read_checkpoint
    from kdforge.engine.pipeline import train

    train(load_config("fmnist-cpu-teacher", COMMON + ["epochs=2", f"out={tmp}/teacher"]), echo=lambda m: None)
    digests = {}
    for method in METHODS:
        folder = tmp / method
        train(load_config("fmnist-cpu-student", COMMON + [
            "epochs=2", f"method={method}", *EXTRA.get(method, ()), f"teacher_checkpoint={tmp}/teacher", f"out={folder}"]), echo=lambda m: None)
        stage = folder / "stage2" if (folder / "stage2").is_dir() else folder
        ckpt = read_checkpoint(stage / "checkpoint.pt")
        digests[method] = weights_digest({**{f"student.{k}": v for k, v in ckpt["model"].items()},
                                          **{f"method.{k}": v for k, v in ckpt["method"].items()}})
        print(f"{method:10s} {digests[method][:16]}", flush=True)
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--compare", help="an earlier output of this script; exit 1 when any digest differs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kdforge-bitwise-") as tmp:
        digests = run_all(Path(tmp))
    Path(args.out).write_text(json.dumps({"methods": digests, "setting": COMMON}, indent=1) + "\n")
    if not args.compare:
        return 0
    before = json.loads(Path(args.compare).read_text())["methods"]
    differ = [m for m in digests if before.get(m) != digests[m]]
    print("identical: every method's weights" if not differ else f"differ: {', '.join(differ)}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
