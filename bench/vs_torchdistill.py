"""kdforge against torchdistill 1.1.5, one KD epoch each, same hardware, one process.

The same recipe on both sides: resnet56 -> resnet20 (kdforge's CIFAR ResNets, handed to torchdistill as
ordinary modules, so the arithmetic is identical), KD with temperature 4 and loss 0.1 CE + 0.9 T^2 KL,
SGD lr 0.1 momentum 0.9 weight decay 5e-4, batch 64, random crop (pad 4) and horizontal flip, CIFAR-10 (JPEG)
training images. The teacher is randomly initialised: timing needs no trained weights.

- torchdistill: its `DistillationBox` built from a config dict (WeightedSumLoss over KDLoss, hooks on the
  model outputs), fed by a `DataLoader` over a dataset that yields PIL images through torchvision transforms
  (the way its CIFAR examples read data), with the loss read back every step as its example loop does;
- kdforge: `kdforge train` of the same recipe, once with no cache (teacher forward every step), and once
  more from a warm teacher-output cache (the second run of the same seed); at its defaults (`amp: auto` is
  bf16 where the hardware multiplies bf16 natively: the runs record which) and again with `amp=false`, the
  float32 arithmetic torchdistill runs, so that the part of the gain that is bf16 is seen apart.

Wall time is the epoch loop, data loading included, dataset decoding excluded on both sides. Order is
interleaved (torchdistill, kdforge, ...) and each side repeated `--repeats` times; the median is reported.

    make bench-extra    # pip install --no-deps torchdistill==1.1.5: the optional `bench` extra; torch is not touched
    .venv/bin/python bench/vs_torchdistill.py [--threads 2] [--workers 2] [--per-class N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BATCH, LR, TEMPERATURE, CE_WEIGHT, KD_WEIGHT = 64, 0.1, 4.0, 0.1, 0.9
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PilCifar:
    """Training images as PIL images through torchvision transforms, one image at a time."""

    def __init__(self, images, labels, transform):
        self.images = images.transpose(0, 2, 3, 1)  # NCHW -> NHWC for PIL
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def torchdistill_epoch(teacher, student, images, labels, workers: int) -> float:
    import torch
    from torch.utils.data import RandomSampler
    from torchdistill.core.distillation import DistillationBox
    from torchvision import transforms

    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    config = {
        "num_epochs": 1,
        "train_data_loader": {"dataset_id": "train", "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
                              "kwargs": {"batch_size": BATCH, "num_workers": workers, "drop_last": True}},
        "teacher": {"requires_grad": False, "forward_proc": "forward_batch_only"},
        "student": {"forward_proc": "forward_batch_only"},
        "optimizer": {"key": "SGD", "kwargs": {"lr": LR, "momentum": 0.9, "weight_decay": 5e-4}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": {
            "criterion": {"key": "KDLoss", "kwargs": {
                "student_module_path": ".", "student_module_io": "output", "teacher_module_path": ".",
                "teacher_module_io": "output", "temperature": TEMPERATURE, "alpha": CE_WEIGHT, "beta": KD_WEIGHT}},
            "weight": 1.0}}}},
    }
    device = torch.device("cpu")
    teacher.eval()
    box = DistillationBox(teacher, student, {"train": PilCifar(images, labels, transform)}, config, device, None,
                          False, 1.0)
    start = time.perf_counter()
    box.pre_epoch_process(epoch=0)
    for sample_batch, targets, supp_dict in box.train_data_loader:
        sample_batch, targets = sample_batch.to(device), targets.to(device)
        loss = box.forward_process(sample_batch, targets, supp_dict)
        box.post_forward_process(loss=loss)
        loss.item()  # the example loop logs the loss every step
    box.post_epoch_process()
    return time.perf_counter() - start


def kdforge_epoch(teacher_file: Path, out: Path, per_class: int | None, threads: int,
                  extra: list[str]) -> tuple[float, dict, str]:
    from kdforge.config import load_config
    from kdforge.engine.pipeline import train

    subset = f"data.train_per_class={per_class}" if per_class else "data.train_per_class=null"
    cfg = load_config("cifar10-cpu-student", [
        "student=resnet20", "teacher=resnet56", "method=kd", f"teacher_checkpoint={teacher_file}", "epochs=1",
        f"threads={threads}", "progress=false", "tensorboard=false", "teacher_cache=true", subset,
        f"data.batch_size={BATCH}", f"optim.lr={LR}", "optim.schedule=constant", f"out={out}",
        f"method_args.temperature={TEMPERATURE}", f"method_args.ce_weight={CE_WEIGHT}",
        f"method_args.kd_weight={KD_WEIGHT}", *extra])
    summary = train(cfg)
    return summary["train_seconds"], summary.get("teacher_cache") or {}, summary["amp_reason"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="torchdistill DataLoader workers")
    parser.add_argument("--per-class", type=int, default=None, help="training images per class (default: all 5,000)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="results/vs_torchdistill.json")
    args = parser.parse_args()
    try:
        import torchdistill
    except ImportError:
        print("torchdistill is not installed: run `make bench-extra` (pip install --no-deps torchdistill==1.1.5)", file=sys.stderr)
        return 2
    import numpy as np
    import torch

    from kdforge.data.sources import cache_dir, read_cifar10_jpeg
    from kdforge.fileio import atomic_write_json
    from kdforge.models import create_model

    torch.set_num_threads(args.threads)
    raw = read_cifar10_jpeg()
    images, labels = raw["train"]
    if args.per_class:
        keep = np.concatenate([np.flatnonzero(labels == c)[:args.per_class] for c in range(10)])
        images, labels = images[keep], labels[keep]
    runs = {"kdforge_cold": [], "kdforge_warm": [], "kdforge_cold_fp32": ["amp=false"], "kdforge_warm_fp32": ["amp=false"]}
    times = {"torchdistill": [], **{name: [] for name in runs}}
    precision = {}
    with tempfile.TemporaryDirectory(prefix="kdforge-vs-td-") as tmp:
        torch.manual_seed(0)
        teacher_file = Path(tmp) / "resnet56.pt"
        torch.save({"model": create_model("resnet56", 10).state_dict()}, teacher_file)
        real_cache = cache_dir()
        os.environ["KDFORGE_CACHE"] = str(Path(tmp) / "cache")
        (Path(tmp) / "cache").mkdir()
        for npz in real_cache.glob("cifar10-jpeg-*.npz"):  # decoded arrays: shared, never decoded twice
            (Path(tmp) / "cache" / npz.name).symlink_to(npz)
        for r in range(args.repeats):
            torch.manual_seed(r)
            teacher = create_model("resnet56", 10)
            teacher.load_state_dict(torch.load(teacher_file)["model"])
            times["torchdistill"].append(torchdistill_epoch(teacher, create_model("resnet20", 10), images, labels,
                                                            args.workers))
            print(f"repeat {r}: torchdistill {times['torchdistill'][-1]:.1f} s", flush=True)
            for name, extra in runs.items():
                if "cold" in name:  # a fresh cache: the teacher runs every step
                    shutil.rmtree(Path(tmp) / "cache" / "teacher-outputs", ignore_errors=True)
                seconds, cache, precision[name] = kdforge_epoch(teacher_file, Path(tmp) / f"{name}-{r}", args.per_class,
                                                                args.threads, extra)
                times[name].append(seconds)
                print(f"repeat {r}: {name} {seconds:.1f} s ({precision[name]}; cache {cache})", flush=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {"setting": {**vars(args), "pair": "resnet56 -> resnet20", "batch": BATCH, "images": int(len(labels)),
                          "torchdistill": torchdistill.__version__, "torch": torch.__version__},
              "seconds": times, "median_seconds": median, "kdforge_precision": precision,
              **{f"{name}_over_torchdistill": median[name] / median["torchdistill"] for name in runs}}
    atomic_write_json(args.out, result)
    print(f"one KD epoch, {len(labels)} images: torchdistill {median['torchdistill']:.1f} s, kdforge "
          f"{median['kdforge_cold']:.1f} s cold ({result['kdforge_cold_over_torchdistill']:.2f}x), "
          f"{median['kdforge_warm']:.1f} s warm ({result['kdforge_warm_over_torchdistill']:.2f}x) at its defaults "
          f"({precision['kdforge_cold']}); float32: {result['kdforge_cold_fp32_over_torchdistill']:.2f}x cold, "
          f"{result['kdforge_warm_fp32_over_torchdistill']:.2f}x warm -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
