"""A detection run's data: the COCO-format splits under `data.root` (the folders `kdforge detection-data` writes,
or COCO 2017's own layout), served as streams of DetectionBatches that the trainer reads like classification's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdforge.data.coco import CocoDetection
from kdforge.errors import ConfigError, DataNotFoundError


@dataclass
class DetectionBundle:
    name: str
    train: CocoDetection
    test: CocoDetection
    val: CocoDetection | None
    num_classes: int  # object classes (the detector adds the background)
    classes: list[str]
    in_channels: int = 3
    notes: list[str] = field(default_factory=list)

    def stream(self, split: str, batch_size: int, *, train: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
               workers: int = 0, device="cpu") -> DetectionStream:
        # evaluation streams are not sharded: COCOeval needs every image's detections in one process
        return DetectionStream(getattr(self, split), batch_size, train=train, seed=seed, device=device,
                               rank=rank if train else 0, world_size=world_size if train else 1)


class DetectionStream:
    """One split's batches, epoch by epoch: the training order and flips are drawn from (seed, epoch) and are the
    same whatever `start_batch` a resumed epoch begins at; under torchrun each rank takes every world_size-th
    image of the epoch's order. Training drops a last partial batch (every rank steps alike)."""

    def __init__(self, dataset: CocoDetection, batch_size: int, *, train: bool, seed: int = 0, device="cpu",
                 rank: int = 0, world_size: int = 1):
        self.dataset, self.batch_size, self.train, self.seed = dataset, batch_size, train, seed
        self.device, self.rank, self.world_size = device, rank, world_size

    def __len__(self) -> int:
        if self.train:
            return len(self.dataset) // (self.batch_size * self.world_size)
        return -(-len(self.dataset) // self.batch_size)

    def epoch(self, epoch: int, start_batch: int = 0):
        order, flips = self.dataset.epoch_plan(train=self.train, seed=self.seed, epoch=epoch)
        if self.train:
            used = len(self) * self.batch_size * self.world_size
            order, flips = order[:used][self.rank::self.world_size], flips[:used][self.rank::self.world_size]
        for b in range(start_batch, len(self)):
            part = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield self.dataset.batch(order[part], flips[part], self.device)


def coco_split_files(root: Path) -> dict[str, tuple[Path, Path]]:
    """split -> (annotations JSON, image folder) for the layout found under `root`: `kdforge detection-data`'s
    (train/val/test.json + <split>/images) or COCO 2017's (annotations/instances_{train,val}2017.json +
    {train,val}2017/, whose val split serves as the test split: its test annotations are not public)."""
    ours = {s: (root / f"{s}.json", root / s / "images") for s in ("train", "val", "test")}
    if ours["train"][0].exists():
        return {s: files for s, files in ours.items() if files[0].exists()}
    coco = {s: (root / "annotations" / f"instances_{s}2017.json", root / f"{s}2017") for s in ("train", "val")}
    if coco["train"][0].exists():
        return {"train": coco["train"], "test": coco["val"]} if coco["val"][0].exists() else {"train": coco["train"]}
    raise DataNotFoundError(f"no COCO-format data under {root}: expected train.json + train/images (as written by "
                            "`kdforge detection-data --out DIR`) or COCO 2017's annotations/instances_train2017.json")


def load_detection_data(cfg) -> DetectionBundle:
    """The train / val / test splits named by `cfg` (a DataConfig with dataset `coco` and `root` set)."""
    if cfg.dataset != "coco" or not cfg.root:
        raise ConfigError("task: detection reads COCO-format data: set data.dataset=coco and data.root=DIR (a folder "
                          "written by `kdforge detection-data`, or COCO 2017)")
    files = coco_split_files(Path(cfg.root))
    if "test" not in files:
        raise DataNotFoundError(f"{cfg.root} has no test (or COCO val2017) annotations to evaluate on")
    splits = {s: CocoDetection(*paths) for s, paths in files.items()}
    train = splits["train"]
    for name, split in splits.items():
        if split.classes != train.classes:
            raise ConfigError(f"{cfg.root}: the {name} split's categories differ from the training split's")
    notes = [] if "val" in splits else ["no validation split: the best epoch is selected on the test split"]
    return DetectionBundle("coco", train, splits["test"], splits.get("val"), len(train.classes), list(train.classes),
                           notes=notes)


def stack_detections(outputs: list[dict], index: torch.Tensor) -> list[dict]:
    """torchvision's per-image detections, on the host, with each image's dataset index (what coco_metrics reads)."""
    return [{"image_index": int(i), **{k: o[k].detach().float().cpu() if k != "labels" else o[k].cpu()
                                       for k in ("boxes", "scores", "labels")}}
            for i, o in zip(index.tolist(), outputs)]
