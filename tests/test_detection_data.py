"""`kdforge detection-data`: CIFAR-10 objects composited onto canvases, written as COCO-format splits that
pycocotools reads; boxes inside the canvas, the pixels inside a box are the resized CIFAR object; deterministic."""

import json

import numpy as np
import pytest

from kdforge.data.detection_build import compose

from conftest import run_cli, shared_data_dir

pytest.importorskip("pycocotools")


def test_a_canvas_holds_its_objects_pixels_inside_their_boxes():
    from PIL import Image

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    image, placed = compose(np.random.default_rng(1), pool, np.arange(5), 64, (3, 3), (16, 24))
    assert image.shape == (64, 64, 3) and 1 <= len(placed) <= 3
    for (x, y, w, h), label in placed:
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and 16 <= w == h <= 24
    (x, y, w, h), label = placed[-1]  # the last object is drawn over everything before it
    expected = np.asarray(Image.fromarray(pool[label]).resize((w, h), Image.BILINEAR))
    assert np.array_equal(image[y:y + h, x:x + w], expected)


@pytest.mark.slow
def test_the_command_writes_coco_splits_pycocotools_reads_deterministically(tmp_path):
    from pycocotools.coco import COCO

    if shared_data_dir() is None:
        pytest.skip("cifar10-jpeg.tar.gz not found beside the repository (../shared/data)")
    args = ["--canvas", "64", "--train", "6", "--val", "2", "--test", "3", "--seed", "3"]
    for name in ("a", "b"):
        result = run_cli("detection-data", "--out", str(tmp_path / name), *args)
        assert result.returncode == 0, result.stderr
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        coco = COCO(str(tmp_path / "a" / f"{split}.json"))
        assert len(coco.getImgIds()) == n and len(coco.getCatIds()) == 10
        for image_id in coco.getImgIds():
            boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))]
            assert 1 <= len(boxes) <= 4 and all(x + w <= 64 and y + h <= 64 for x, y, w, h in boxes)
        assert (tmp_path / "a" / split / "images" / "000001.jpg").read_bytes() == \
            (tmp_path / "b" / split / "images" / "000001.jpg").read_bytes()  # same seed, same bytes
    assert json.loads((tmp_path / "a" / "test.json").read_text())["categories"][0] == {"id": 1, "name": "airplane"}
    from kdforge.data.coco import CocoDetection

    train = CocoDetection(tmp_path / "a" / "train.json", tmp_path / "a" / "train" / "images")
    assert len(train) == 6 and train.classes[0] == "airplane"
    assert all(1 <= int(label) <= 10 for t in train.targets for label in t["labels"])
    again = run_cli("detection-data", "--out", str(tmp_path / "a"), *args)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "exists" in again.stderr
    bad = run_cli("detection-data", "--out", str(tmp_path / "c"), "--objects", "4-1")
    assert bad.returncode == 2 and "LOW <= HIGH" in bad.stderr and not (tmp_path / "c").exists()


def test_train_and_val_objects_are_disjoint_and_cover_every_class():
    # the archive lists its training images class by class: a plain 90 / 10 cut would give val one class only
    from kdforge.data.detection_build import object_pools

    labels = np.repeat(np.arange(10), 50)
    images = np.arange(500)[:, None]  # each "image" is its own index
    pools = object_pools({"train": (images, labels), "test": (images[:20], labels[:20])}, seed=0)
    (train_x, train_y), (val_x, val_y) = pools["train"], pools["val"]
    assert np.bincount(val_y).tolist() == [5] * 10 and np.bincount(train_y).tolist() == [45] * 10
    assert not set(train_x[:, 0]) & set(val_x[:, 0]) and len(train_x) + len(val_x) == 500
    again = object_pools({"train": (images, labels), "test": (images[:20], labels[:20])}, seed=0)
    assert np.array_equal(again["val"][0], val_x)  # deterministic by seed
