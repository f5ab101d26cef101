"""COCO-format detection data (an annotations JSON + an image folder) read through pycocotools, checked on load,
served as batches of images and torchvision-style targets, with a horizontal flip that moves the boxes too.

Real COCO 2017 (`annotations/instances_train2017.json` + `train2017/`) and the folders `kdforge detection-data`
writes both load this way. Category ids are mapped to contiguous labels 1..C in sorted id order (0 is the
detector's background), and back for COCOeval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdforge.errors import DataNotFoundError, UserError


@dataclass
class DetectionBatch:
    index: torch.Tensor  # dataset indices (int64)
    images: list[torch.Tensor]  # 3 x H x W each, float in [0, 1] (sizes may differ; the detector normalises)
    targets: list[dict]  # per image: boxes (N x 4, x1 y1 x2 y2, float) and labels (N, int64, 1..C)


class CocoDetection:
    """One split: images decoded once into memory (uint8), boxes and labels checked against the image size and
    the category list."""

    def __init__(self, annotations: str | Path, images: str | Path):
        try:
            from pycocotools.coco import COCO
        except ImportError:
            raise UserError("COCO-format data needs pycocotools: pip install 'kdforge[detection]'") from None
        annotations, images = Path(annotations), Path(images)
        if not annotations.exists():
            raise DataNotFoundError(f"annotation file {annotations} does not exist")
        if not images.is_dir():
            raise DataNotFoundError(f"image folder {images} does not exist")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            try:
                self.coco = COCO(str(annotations))
            except (ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{annotations} is not a COCO annotation file ({type(exc).__name__}: {exc})") from None
        self.image_ids = sorted(self.coco.getImgIds())
        if not self.image_ids:
            raise UserError(f"{annotations} lists no images; point it at a COCO-format file with images")
        self.category_ids = sorted(self.coco.getCatIds())
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}  # 0: background
        self.classes = [self.coco.cats[c]["name"] for c in self.category_ids]
        self.images, self.targets = self._load(images, annotations)

    def _load(self, folder: Path, annotations: Path) -> tuple[list[np.ndarray], list[dict]]:
        from PIL import Image

        images, targets = [], []
        for image_id in self.image_ids:
            info = self.coco.imgs[image_id]
            path = folder / info["file_name"]
            if not path.exists():
                raise DataNotFoundError(f"{path} (image {image_id} of {annotations.name}) does not exist")
            with Image.open(path) as im:
                array = np.array(im.convert("RGB"))  # a writable copy
            height, width = array.shape[:2]
            boxes, labels = [], []
            for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False)):
                x, y, w, h = ann["bbox"]
                if ann["category_id"] not in self.label_of:
                    raise UserError(f"{annotations.name}: annotation {ann['id']} has category_id {ann['category_id']}, "
                                    "which the file's categories do not list")
                if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width + 0.5 or y + h > height + 0.5:
                    raise UserError(f"{annotations.name}: annotation {ann['id']} box {ann['bbox']} lies outside its "
                                    f"{width}x{height} image {info['file_name']}; fix or drop it")
                boxes.append([x, y, x + w, y + h])
                labels.append(self.label_of[ann["category_id"]])
            images.append(array)
            targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            "labels": torch.tensor(labels, dtype=torch.int64)})
        return images, targets

    def __len__(self) -> int:
        return len(self.image_ids)

    def batches(self, batch_size: int, *, train: bool, seed: int = 0, epoch: int = 0, device="cpu"):
        """One epoch of DetectionBatches: shuffled with a horizontal flip of p 0.5 (boxes flipped alike) when
        training, in order and untouched otherwise; deterministic in (seed, epoch)."""
        order, flips = self.epoch_plan(train=train, seed=seed, epoch=epoch)
        for start in range(0, len(self), batch_size):
            yield self.batch(order[start:start + batch_size], flips[start:start + batch_size], device)

    def epoch_plan(self, *, train: bool, seed: int = 0, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(the epoch's image order, whether each position is flipped): a permutation and coin flips drawn from
        (seed, epoch) when training, the identity and no flips otherwise."""
        if not train:
            return torch.arange(len(self)), torch.zeros(len(self), dtype=torch.bool)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self), generator=gen)
        return order, torch.rand(len(self), generator=gen) < 0.5

    def batch(self, index: torch.Tensor, flips: torch.Tensor, device="cpu") -> DetectionBatch:
        images, targets = [], []
        for i, flip in zip(index.tolist(), flips.tolist()):
            image = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div_(255)
            target = {k: v.clone() for k, v in self.targets[i].items()}
            if flip:
                image, target["boxes"] = hflip(image, target["boxes"])
            images.append(image.to(device))
            targets.append({k: v.to(device) for k, v in target.items()})
        return DetectionBatch(index.to(device), images, targets)


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A C x H x W image mirrored left-right, and its x1 y1 x2 y2 boxes with it."""
    width = image.shape[-1]
    flipped = boxes.clone()
    flipped[:, 0], flipped[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return image.flip(-1), flipped


METRICS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")  # COCOeval's first six statistics, in its order


def coco_metrics(dataset: CocoDetection, detections: list[dict]) -> dict[str, float]:
    """COCO box AP (and AP50, AP75, AP_S/M/L), in %, of `detections` against the dataset's annotations:
    one dict per image with `image_index` (the dataset index), `boxes` (N x 4, x1 y1 x2 y2), `scores` and
    `labels` (1..C, as the dataset serves them). pycocotools' COCOeval computes every figure."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    results = []
    category_of = {label: cid for cid, label in dataset.label_of.items()}
    for det in detections:
        image_id = dataset.image_ids[int(det["image_index"])]
        for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            results.append({"image_id": image_id, "category_id": category_of[int(label)],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    if not results:
        return {name: 0.0 for name in METRICS}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its table; the figures are returned
        evaluator = COCOeval(dataset.coco, dataset.coco.loadRes(results), "bbox")
        evaluator.params.imgIds = dataset.image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: max(0.0, float(v)) * 100 for name, v in zip(METRICS, evaluator.stats[:6])}
