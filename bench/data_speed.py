"""Data-pipeline speed: one epoch of the CIFAR-10 training stream (50,000 images, random crop with
padding 4 + horizontal flip + normalisation, batch 128, no model), through kdforge's in-memory stream
and through torchvision ImageFolder + transforms + DataLoader(num_workers=2) over the same JPEG tree.

    .venv/bin/python bench/data_speed.py [--threads 2] [--repeats 5] [--out results/data_speed.json]

kdforge's figure is the median of --repeats epochs; torchvision's is the median of --tv-repeats epochs.
Both are measured in the same process, one after the other, so their ratio is meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tarfile
import time
from pathlib import Path

import torch

from kdforge.data import DataConfig, load_data  # noqa: E402
from kdforge.data.sources import cache_dir, data_roots  # noqa: E402
from kdforge.fileio import atomic_write_json  # noqa: E402


def time_kdforge(repeats: int, batch_size: int) -> list[float]:
    bundle = load_data(DataConfig(dataset="cifar10-jpeg"))  # decoded once, then read from the cache
    stream = bundle.stream("train", batch_size, train=True, seed=0)
    times = []
    for epoch in range(repeats + 1):
        start, images = time.perf_counter(), 0
        for batch in stream.epoch(epoch):
            images += batch.input.shape[0]
        if epoch:  # the first epoch warms up the allocator
            times.append(time.perf_counter() - start)
    assert images >= 49_920, images
    return times


def jpeg_tree() -> Path:
    """The archive unpacked once (as a torchvision user would have it on disk)."""
    target = cache_dir() / "cifar10-jpeg-tree"
    if (target / ".complete").exists():
        return target
    archive = next(r / "cifar10-jpeg.tar.gz" for r in data_roots(None) if (r / "cifar10-jpeg.tar.gz").exists())
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter="data")
    (target / ".complete").touch()
    return target


def time_torchvision(repeats: int, batch_size: int, workers: int) -> list[float]:
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ])
    dataset = datasets.ImageFolder(str(jpeg_tree() / "train"), transform=tf)
    assert len(dataset) == 50_000, len(dataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True)
    times = []
    for _ in range(repeats):
        start, images = time.perf_counter(), 0
        for x, y in loader:
            images += x.shape[0]
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tv-repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="results/data_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kd_times = time_kdforge(args.repeats, args.batch_size)
    tv_times = time_torchvision(args.tv_repeats, args.batch_size, args.workers)
    kd, tv = statistics.median(kd_times), statistics.median(tv_times)
    result = {
        "kdforge_epoch_seconds": kd, "kdforge_all": kd_times,
        "torchvision_epoch_seconds": tv, "torchvision_all": tv_times,
        "speedup": tv / kd, "threads": args.threads, "workers": args.workers, "batch_size": args.batch_size,
        "images": 50_000, "torch": torch.__version__,
    }
    atomic_write_json(args.out, result)
    print(f"kdforge in-memory stream : {kd:6.2f} s/epoch (median of {len(kd_times)})")
    print(f"torchvision ImageFolder  : {tv:6.2f} s/epoch (median of {len(tv_times)}, {args.workers} workers)")
    print(f"speed-up                 : {tv / kd:6.1f}x   -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
