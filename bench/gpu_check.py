"""The GPU check: one script, one JSON, within 8 minutes on one GPU. Run it whenever a GPU machine is lent and
commit its output under results/.

    .venv/bin/python bench/gpu_check.py [--out results/gpu_check.json] [--data-root ../shared/data]

1. the test suite on that machine, the device-touching tests on CUDA too (every failure listed);
2. bf16 autocast + compile + channels_last, resnet32x4 -> resnet8x4 on CIFAR-10 (JPEG; tiny generated CIFAR-10
   data where the archive is absent), data on the device: training images/s of the `ce` student, of `kd` with a
   cold teacher-output cache (recording) and with the warm cache (replaying);
3. a one-process NCCL torchrun run.

Each part's result is written to the JSON as soon as it is known, so a cut-off run keeps what it measured. On a
machine without CUDA it stops at once with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _record(out: Path, result: dict, key: str, value) -> None:
    result[key] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)


def _run(cmd: list[str], timeout: float, env: dict | None = None, full: bool = False) -> dict:
    """rc, seconds and the output's tail; with `full`, the whole output too (under "full")."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
        output = done.stdout + done.stderr
        return {"rc": done.returncode, "seconds": round(time.perf_counter() - start, 1), "tail": output[-1500:],
                **({"full": output} if full else {})}
    except subprocess.TimeoutExpired:
        return {"rc": None, "seconds": round(time.perf_counter() - start, 1), "tail": f"timed out after {timeout} s"}


def _tests(log: Path) -> dict:
    """The whole suite (the device-touching tests run on CUDA too), spread over the machine's cores where
    pytest-xdist is present; every failure is listed, not only the first."""
    import importlib.util

    spread = ["-n", str(min(8, os.cpu_count() or 1))] if importlib.util.find_spec("xdist") else []
    done = _run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *spread], 270, full=True)
    full = done.pop("full", "")
    log.write_text(full)  # the whole output beside the JSON: a failure's traceback, not only its name
    done["failed"] = [line for line in full.splitlines() if line.startswith(("FAILED", "ERROR"))]
    done["counts"] = test_counts(full)
    done["log"] = log.name
    return done


def test_counts(output: str) -> dict[str, int]:
    """pytest's closing tally ("13 failed, 638 passed, 2 skipped, ... in 257.53s") as {"failed": 13, ...}."""
    closing = [line for line in output.splitlines() if re.search(r"\b\d+ (passed|failed)\b", line)]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)",
                                                   closing[-1])} if closing else {}


def _last_epoch_rate(run: Path) -> float | None:
    """Images/s of the last epoch alone: the logged rate is cumulative, so the first epoch's compilation is
    taken out by differencing the last two epochs' cumulative times."""
    rates = [json.loads(line)["images_per_second"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"type": "epoch"' in line]
    if len(rates) < 2:
        return None
    k = len(rates)
    return round(1.0 / (k / rates[-1] - (k - 1) / rates[-2]), 1)  # per epoch's images, which cancel


def _throughput(data_args: list[str], teacher: Path, tmp: Path) -> dict:
    from kdforge.config import load_config
    from kdforge.engine.pipeline import train

    # 3 epochs: the first pays for compilation, the last is the steady rate
    common = [*data_args, "epochs=3", "eval_every=3", "device=cuda", "amp=true", "compile=true",
              "channels_last=true", "progress=false", "tensorboard=false", "data.batch_size=128",
              "student=resnet8x4", "teacher=resnet32x4"]
    os.environ["KDFORGE_CACHE"] = str(tmp / "cache")
    rows = {}
    for name, extra in (("ce", ["method=ce"]),
                        ("kd_cold_cache", ["method=kd", f"teacher_checkpoint={teacher}", "teacher_cache=true"]),
                        ("kd_warm_cache", ["method=kd", f"teacher_checkpoint={teacher}", "teacher_cache=true"])):
        summary = train(load_config("cifar10-cpu-student", common + extra + [f"out={tmp / name}"]), echo=lambda m: None)
        rows[name] = {"train_images_per_second_last_epoch": _last_epoch_rate(tmp / name),
                      "train_images_per_second_with_compile": round(summary["train_images_per_second"], 1),
                      "wall_seconds": round(summary["wall_seconds"], 1), "compiled": summary.get("compiled"),
                      "teacher_cache": summary.get("teacher_cache"), "top1_last": summary.get("top1_last")}
    return rows


def _data_args(data_root: str | None, tmp: Path) -> tuple[list[str], str]:
    from kdforge.data.sources import data_roots, find_file

    archive = find_file(("cifar10-jpeg.tar.gz",), data_roots(data_root, ("shared/data",)))
    if archive is not None:
        return [f"data.root={archive.parent}", "data.train_per_class=1000"], f"CIFAR-10 JPEG ({archive})"
    from kdforge.bench.smoke import write_tiny_cifar100

    root = write_tiny_cifar100(tmp / "tiny", 2000, 200)  # the pickle layout, 100 classes, random pixels
    return ["data.dataset=cifar100", f"data.root={root}", "data.train_per_class=null"], \
        "generated CIFAR-100-format data (the CIFAR-10 archive was not found)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/gpu_check.json")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a machine with a GPU",
              file=sys.stderr)
        return 2
    out, result = Path(args.out), {}
    _record(out, result, "device", {"name": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                    "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()})
    _record(out, result, "tests", _tests(out.with_name(out.stem + "-pytest.log")))
    with tempfile.TemporaryDirectory(prefix="kdforge-gpu-check-") as tmp:
        tmp = Path(tmp)
        from kdforge.models import create_model

        teacher = tmp / "resnet32x4.pt"
        data_args, described = _data_args(args.data_root, tmp)
        classes = 100 if "data.dataset=cifar100" in data_args else 10
        torch.save({"model": create_model("resnet32x4", classes).state_dict()}, teacher)
        _record(out, result, "data", described)
        try:
            _record(out, result, "throughput", _throughput(data_args, teacher, tmp))
        except Exception as exc:  # recorded, so the other parts still report
            _record(out, result, "throughput", {"error": f"{type(exc).__name__}: {exc}"[:500]})
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               f"--log-dir={tmp / 'torchrun-logs'}", "-m", "kdforge", "train", "cifar10-cpu-student",
               "method=ce", "epochs=1", "device=cuda", "progress=false", "tensorboard=false", f"out={tmp / 'ddp'}",
               *data_args]
        _record(out, result, "torchrun_nccl", _run(cmd, 180, env))
    print(json.dumps(result, indent=1))
    return 0 if result["tests"]["rc"] == 0 and result["torchrun_nccl"]["rc"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
