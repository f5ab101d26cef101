"""Datasets: sources read from disk into in-memory uint8 tensors, with batched tensor augmentation.

`load_data(DataConfig)` returns a `DatasetBundle` with the train, optional validation and test splits.
Streams (`bundle.stream(split, ...)`) yield `Batch(index, input, target)` on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdforge.data.inmemory import AugmentSpec, Batch, BatchStream, InMemoryDataset, crop_flip, view_keys
from kdforge.data.sources import read_cifar10_jpeg, read_cifar_pickle, read_digits, read_fashion_mnist, stratified_split
from kdforge.errors import ConfigError
from kdforge.registry import Registry

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


@dataclass
class DataConfig:
    dataset: str = "digits"
    root: str | None = None  # where to look first (then $KDFORGE_DATA, ./data, the cache)
    download: bool = False  # fetch the official archive when it is not found (never implicit)
    batch_size: int = 128
    eval_batch_size: int = 512
    train_per_class: int | None = None  # class-balanced training subset, drawn once with subset_seed
    val_per_class: int = 0  # held-out validation split carved from the training set (for "best")
    subset_seed: int = 0
    classes: list[int] | None = None  # keep only these classes, relabelled 0..k-1 in sorted order
    augment: bool = True
    device_resident: bool = True  # keep the uint8 dataset on the training device (no host copies per step)
    workers: int = 4  # image-folder datasets only
    image_size: int = 224  # image-folder datasets only

    def __post_init__(self):
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError(f"data.batch_size and data.eval_batch_size must be at least 1, got "
                              f"{self.batch_size} and {self.eval_batch_size}")
        if self.train_per_class is not None and self.train_per_class < 1:
            raise ConfigError(f"data.train_per_class must be at least 1 (or null for all), got {self.train_per_class}")
        if self.val_per_class < 0 or self.workers < 0 or self.image_size < 8:
            raise ConfigError("data.val_per_class and data.workers must be >= 0 and data.image_size >= 8")


@dataclass
class DatasetSpec:
    reader: Callable[[DataConfig], dict]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: AugmentSpec
    description: str
    num_classes: int | None = None  # known without reading the data (None: a folder tree's own count)


@dataclass
class DatasetBundle:
    name: str
    train: object
    test: object
    val: object | None
    num_classes: int
    in_channels: int
    classes: list[str]
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    notes: list[str] = field(default_factory=list)  # what a run should log about how the data was split

    def stream(self, split: str, batch_size: int, *, train: bool, seed: int = 0, rank: int = 0,
               world_size: int = 1, workers: int = 4, device="cpu"):
        data = getattr(self, split)
        if isinstance(data, InMemoryDataset):
            return BatchStream(data, batch_size, train=train, seed=seed, augment=self.augment if train else AugmentSpec(),
                               rank=rank, world_size=world_size, device=device)
        from kdforge.data.imagefolder import FolderStream

        return FolderStream(data, batch_size, train=train, seed=seed, workers=workers, rank=rank,
                            world_size=world_size, device=device)


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.add("cifar10-jpeg", DatasetSpec(lambda c: read_cifar10_jpeg(c.root), CIFAR10_MEAN, CIFAR10_STD,
                                         AugmentSpec(4, True), "CIFAR-10 from the JPEG archive cifar10-jpeg.tar.gz", 10))
DATASETS.add("cifar10", DatasetSpec(lambda c: read_cifar_pickle("cifar10", c.root, c.download), CIFAR10_MEAN,
                                    CIFAR10_STD, AugmentSpec(4, True), "CIFAR-10, official python pickles", 10))
DATASETS.add("cifar100", DatasetSpec(lambda c: read_cifar_pickle("cifar100", c.root, c.download), CIFAR100_MEAN,
                                     CIFAR100_STD, AugmentSpec(4, True), "CIFAR-100, official python pickles", 100))
DATASETS.add("fashion-mnist", DatasetSpec(lambda c: read_fashion_mnist(c.root, c.download), (0.2860,), (0.3530,),
                                          AugmentSpec(2, True), "Fashion-MNIST, IDX files", 10))
DATASETS.add("digits", DatasetSpec(lambda c: read_digits(), (0.3050,), (0.3750,), AugmentSpec(1, False),
                                   "8x8 digits from scikit-learn, fixed stratified 70/30 split", 10))
DATASETS.add("imagefolder", DatasetSpec(lambda c: {}, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), AugmentSpec(),
                                        "any train/ + val/ class-per-folder tree (ImageNet, CUB-200)"))

# CIFAR-FS split of CIFAR-100 (fine-label indices), used to order classes for generalized KD.
CIFAR_FS_VAL = [4, 7, 14, 15, 19, 26, 27, 32, 40, 47, 48, 55, 71, 73, 87, 89]
CIFAR_FS_TEST = [2, 5, 8, 21, 34, 42, 46, 58, 60, 62, 69, 70, 77, 83, 84, 86, 94, 95, 98, 99]
CIFAR_FS_TRAIN = sorted(set(range(100)) - set(CIFAR_FS_VAL) - set(CIFAR_FS_TEST))


def gkd_split(shift: int) -> tuple[list[int], list[int]]:
    """(teacher classes, student classes) of CIFAR-100 for generalized KD: classes ordered as CIFAR-FS
    meta-train + meta-val + meta-test (each sorted); the teacher takes the first 50 positions and the student
    positions [shift, shift + 50), so 50 - shift classes are shared (shift 50: disjoint)."""
    if not 0 <= int(shift) <= 50:
        raise ConfigError(f"gkd shift must be in 0..50, got {shift}")
    order = CIFAR_FS_TRAIN + CIFAR_FS_VAL + CIFAR_FS_TEST
    return order[:50], order[shift:shift + 50]


_MEMORY_CACHE: dict[tuple, dict] = {}


def _read(cfg: DataConfig) -> dict:
    key = (cfg.dataset, cfg.root)
    if key not in _MEMORY_CACHE:
        _MEMORY_CACHE[key] = DATASETS.get(cfg.dataset).reader(cfg)
    return _MEMORY_CACHE[key]


def _balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.RandomState) -> np.ndarray:
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if per_class > len(idx):
            raise ConfigError(f"class {c} has {len(idx)} training images, fewer than the {per_class} per class asked for")
        picks.append(np.sort(idx[rng.permutation(len(idx))[:per_class]]))
    return np.sort(np.concatenate(picks))


def _keep_classes(x: np.ndarray, y: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    keep = sorted(set(int(c) for c in classes))
    mapping = np.full(int(max(y.max(), max(keep))) + 1, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    mask = np.isin(y, keep)
    return x[mask], mapping[y[mask]]


def split_indices(labels: np.ndarray, train_per_class: int | None, val_per_class: int, subset_seed: int
                  ) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """(training indices, validation indices or None, a note or None) into `labels`.

    The training subset depends only on the labels, `train_per_class` and `subset_seed`: asking for a validation
    split never moves it, so a run with one trains on the same images as the teacher and as the same config
    without one. The validation split is drawn from the images outside the training subset; only where there are
    too few (every image is used for training) is it carved from the training subset, and the note says so.
    """
    rng = np.random.RandomState(subset_seed)
    everything = np.arange(len(labels))
    train = _balanced_subset(labels, train_per_class, rng) if train_per_class else everything
    if not val_per_class:
        return train, None, None
    outside = np.setdiff1d(everything, train)
    if np.bincount(labels[outside], minlength=int(labels.max()) + 1).min() >= val_per_class:
        # a second stream, so the draw never depends on how many numbers the training draw consumed
        val = outside[_balanced_subset(labels[outside], val_per_class, np.random.RandomState([subset_seed, 1]))]
        return train, val, None
    val = train[_balanced_subset(labels[train], val_per_class, np.random.RandomState([subset_seed, 1]))]
    note = (f"data: too few images outside the training subset for {val_per_class} validation images per class; "
            f"the validation split is carved from the training subset, which shrinks to {len(train) - len(val)}")
    return np.setdiff1d(train, val), val, note


def load_data(cfg: DataConfig, device="cpu") -> DatasetBundle:
    """Read, subset and split the dataset named by `cfg`; in-memory splits are placed on `device`."""
    spec = DATASETS.get(cfg.dataset)
    if cfg.dataset == "imagefolder":
        return _load_folder(cfg)
    raw = _read(cfg)
    (train_x, train_y), (test_x, test_y) = raw["train"], raw["test"]
    classes = raw.get("classes") or [str(i) for i in range(int(train_y.max()) + 1)]
    if cfg.classes is not None:
        bad = [c for c in cfg.classes if not 0 <= int(c) < len(classes)]
        if bad or not cfg.classes:
            raise ConfigError(f"data.classes must be a non-empty list of labels in 0..{len(classes) - 1}, got {cfg.classes}")
        train_x, train_y = _keep_classes(train_x, train_y, cfg.classes)
        test_x, test_y = _keep_classes(test_x, test_y, cfg.classes)
        classes = [classes[c] for c in sorted(set(int(c) for c in cfg.classes))]
    train_idx, val_idx, note = split_indices(train_y, cfg.train_per_class, cfg.val_per_class, cfg.subset_seed)
    val = (train_x[val_idx], train_y[val_idx]) if val_idx is not None else None
    train_x, train_y = train_x[train_idx], train_y[train_idx]

    def to_dataset(x, y):
        ds = InMemoryDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y), spec.mean, spec.std, classes)
        return ds.to(device) if cfg.device_resident else ds

    return DatasetBundle(
        name=cfg.dataset,
        train=to_dataset(train_x, train_y),
        test=to_dataset(test_x, test_y),
        val=to_dataset(*val) if val is not None else None,
        num_classes=len(classes),
        in_channels=int(train_x.shape[1]),
        classes=list(classes),
        augment=spec.augment if cfg.augment else AugmentSpec(),
        notes=[note] if note else [],
    )


def _load_folder(cfg: DataConfig) -> DatasetBundle:
    from kdforge.data.imagefolder import FolderSplit

    if not cfg.root:
        raise ConfigError("dataset imagefolder needs data.root: a folder with train/ and val/ class-per-folder trees")
    root = Path(cfg.root)
    test_dir = root / "val" if (root / "val").is_dir() else root / "test"
    train = FolderSplit(root / "train", train=True, image_size=cfg.image_size)
    test = FolderSplit(test_dir, train=False, image_size=cfg.image_size)
    if train.classes != test.classes:
        raise ConfigError(f"{root}: train/ and {test_dir.name}/ hold different class folders")
    return DatasetBundle(cfg.dataset, train, test, None, len(train.classes), 3, train.classes)


__all__ = [
    "AugmentSpec", "Batch", "BatchStream", "DATASETS", "DataConfig", "DatasetBundle", "InMemoryDataset",
    "crop_flip", "gkd_split", "load_data", "split_indices", "stratified_split", "view_keys",
]
