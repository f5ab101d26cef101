"""A detection benchmark from real pixels: CIFAR-10 (JPEG) objects composited onto canvases, written as COCO-format
splits (`<split>/images/*.jpg` + `<split>.json`) that pycocotools reads.

    kdforge detection-data --out data/cifar10-det [--canvas 96] [--train 4000 --val 500 --test 1000]
        [--objects 1-4] [--scale 16-48] [--seed 0]

Each canvas has a random background colour with mild noise and 1..4 objects (CIFAR images resized to a random
side within --scale, at random positions, overlapping another object by IoU <= 0.3). Train and val objects come
from disjoint, class-stratified parts of CIFAR-10's training split, test objects from its test split. Deterministic by seed. The
folder is written under a temporary name and renamed at the end: a killed build leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from kdforge.errors import ConfigError, UserError

SPLITS = ("train", "val", "test")
# Bumped whenever the same arguments would build other canvases (2: train / val objects class-stratified), so that
# folders and teachers named after a build never mix an older one with a newer
BUILDER_VERSION = 2


def _range(text: str, what: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        low, high = int(low), int(high or low)
    except ValueError:
        raise ConfigError(f"--{what} takes N or LOW-HIGH, got {text!r}") from None
    if not 1 <= low <= high:
        raise ConfigError(f"--{what} needs 1 <= LOW <= HIGH, got {text!r}")
    return low, high


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def compose(rng: np.random.Generator, pool: np.ndarray, labels: np.ndarray, canvas: int,
            objects: tuple[int, int], scale: tuple[int, int]) -> tuple[np.ndarray, list[tuple[list[int], int]]]:
    """One canvas (H x W x 3 uint8) and its [(box [x, y, w, h], label)], objects drawn from `pool` (N x 32 x 32 x 3)."""
    from PIL import Image

    colour = rng.integers(40, 216, size=3)
    image = np.clip(colour + rng.normal(0, 8, size=(canvas, canvas, 3)), 0, 255).astype(np.uint8)
    placed: list[tuple[list[int], int]] = []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        index = int(rng.integers(len(pool)))
        side = int(rng.integers(scale[0], min(scale[1], canvas) + 1))
        for _try in range(20):
            x, y = (int(v) for v in rng.integers(0, canvas - side + 1, size=2))
            box = [x, y, side, side]
            if all(_iou(box, other) <= 0.3 for other, _ in placed):
                patch = np.asarray(Image.fromarray(pool[index]).resize((side, side), Image.BILINEAR))
                image[y:y + side, x:x + side] = patch
                placed.append((box, int(labels[index])))
                break
    return image, placed


def object_pools(data: dict, seed: int, convert=lambda x: x) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (object images, labels): train and val objects from a class-stratified 90 / 10 split of CIFAR-10's
    training images (drawn from `seed`; the archive lists them class by class, so a plain cut would give val one
    class and train the other nine), test objects from its test split."""
    from kdforge.data.sources import stratified_split

    train_x, train_y = data["train"]
    train_idx, val_idx = stratified_split(np.asarray(train_y), 0.1, seed)
    return {"train": (convert(train_x[train_idx]), train_y[train_idx]), "val": (convert(train_x[val_idx]), train_y[val_idx]),
            "test": (convert(data["test"][0]), data["test"][1])}


def build_detection_data(out: str | Path, counts: dict[str, int], canvas: int = 96, objects: str = "1-4",
                         scale: str = "16-48", seed: int = 0, root: str | None = None, echo=print) -> Path:
    from PIL import Image
    from tqdm import tqdm

    from kdforge.data.sources import read_cifar10_jpeg

    objects_range, scale_range = _range(objects, "objects"), _range(scale, "scale")
    if canvas < scale_range[0]:
        raise ConfigError(f"--canvas {canvas} is smaller than the smallest object side {scale_range[0]}")
    if any(n < 1 for n in counts.values()):
        raise ConfigError(f"every split needs at least one image, got {counts}")
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} exists; choose another --out or remove it first")
    data = read_cifar10_jpeg(root)
    def channels_last(x):  # the decoded archive is N x C x H x W; PIL wants H x W x C
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.shape[1] == 3 else x

    sources = object_pools(data, seed, channels_last)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(data["classes"])]
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for s, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, s])
        pool, labels = sources[split]
        folder = partial / split / "images"
        folder.mkdir(parents=True)
        images, annotations = [], []
        for i in tqdm(range(counts[split]), desc=f"{split} canvases", leave=False):
            image, placed = compose(rng, pool, labels, canvas, objects_range, scale_range)
            name = f"{i + 1:06d}.jpg"
            Image.fromarray(image).save(folder / name, quality=95)
            images.append({"id": i + 1, "file_name": name, "width": canvas, "height": canvas})
            for box, label in placed:
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                                    "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        (partial / f"{split}.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                           "categories": categories}))
        echo(f"{split}: {len(images)} images, {len(annotations)} objects")
    partial.rename(out)
    return out
