"""COCO-format detection data: tiny files written here in the real format, read through pycocotools; boxes and
categories checked on load with one-line errors; the horizontal flip moves boxes with the pixels."""

import json

import numpy as np
import pytest
import torch

from kdforge.errors import DataNotFoundError, UserError

pytest.importorskip("pycocotools")
from kdforge.data.coco import CocoDetection, hflip  # noqa: E402


def write_coco(tmp_path, annotations, images=((1, "a.png", 20, 16), (2, "b.png", 20, 16)), categories=(3, 7)):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for _, name, w, h in images:
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(folder / name)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in images],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                        for k, (i, c, b) in enumerate(annotations)],
        "categories": [{"id": c, "name": f"class{c}"} for c in categories]}))
    return path, folder


def test_boxes_become_xyxy_and_category_ids_contiguous_labels(tmp_path):
    ds = CocoDetection(*write_coco(tmp_path, [(1, 7, [2, 3, 8, 5]), (1, 3, [0, 0, 4, 4]), (2, 3, [10, 6, 10, 10])]))
    assert len(ds) == 2 and ds.classes == ["class3", "class7"]
    assert ds.targets[0]["boxes"].tolist() == [[2, 3, 10, 8], [0, 0, 4, 4]]
    assert ds.targets[0]["labels"].tolist() == [2, 1] and ds.targets[1]["labels"].tolist() == [1]
    batch = next(ds.batches(2, train=False))
    assert [tuple(im.shape) for im in batch.images] == [(3, 16, 20)] * 2 and 0 <= float(batch.images[0].min())
    assert torch.equal(batch.targets[0]["boxes"], ds.targets[0]["boxes"])


@pytest.mark.parametrize("annotations,categories,error,needle", [
    ([(1, 3, [15, 2, 8, 4])], (3,), UserError, "lies outside its 20x16 image"),
    ([(1, 9, [1, 1, 2, 2])], (3,), UserError, "category_id 9"),
    ([(1, 3, [1, 1, 0, 2])], (3,), UserError, "lies outside"),
])
def test_bad_annotations_are_one_line_errors(tmp_path, annotations, categories, error, needle):
    with pytest.raises(error, match=needle) as info:
        CocoDetection(*write_coco(tmp_path, annotations, categories=categories))
    assert "\n" not in str(info.value)


def test_missing_files_and_empty_annotation_files_are_clear(tmp_path):
    path, folder = write_coco(tmp_path, [], images=())
    with pytest.raises(UserError, match="lists no images"):
        CocoDetection(path, folder)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        CocoDetection(tmp_path / "nope.json", folder)
    path, folder = write_coco(tmp_path, [(1, 3, [1, 1, 2, 2])])
    (folder / "b.png").unlink()
    with pytest.raises(DataNotFoundError, match="b.png"):
        CocoDetection(path, folder)


def test_the_flip_moves_boxes_with_the_pixels(tmp_path):
    image = torch.rand(3, 16, 20)
    boxes = torch.tensor([[2.0, 3.0, 10.0, 8.0]])
    flipped, moved = hflip(image, boxes)
    assert moved.tolist() == [[10.0, 3.0, 18.0, 8.0]]  # x1' = W - x2, x2' = W - x1
    assert torch.equal(flipped[:, 3:8, 10:18], image[:, 3:8, 2:10].flip(-1))
    ds = CocoDetection(*write_coco(tmp_path, [(1, 3, [2, 3, 8, 5]), (2, 7, [0, 0, 4, 4])]))
    runs = [[(b.index.tolist(), [t["boxes"].tolist() for t in b.targets]) for b in ds.batches(1, train=True, seed=1,
                                                                                            epoch=e)]
            for e in (0, 0, 1, 2, 3)]
    assert runs[0] == runs[1]  # deterministic in (seed, epoch)
    seen = {tuple(boxes[0][0]) for run in runs for index, boxes in run if index == [0]}
    assert seen == {(2.0, 3.0, 10.0, 8.0), (10.0, 3.0, 18.0, 8.0)}  # both views of image 0 occur


def test_coco_metrics_on_hand_built_cases(tmp_path):
    from kdforge.data.coco import coco_metrics

    ds = CocoDetection(*write_coco(tmp_path, [(1, 3, [2, 3, 8, 5]), (2, 7, [4, 4, 10, 10])]))

    def det(index, box, label, score=0.9):
        return {"image_index": index, "boxes": torch.tensor([box]), "scores": torch.tensor([score]),
                "labels": torch.tensor([label])}

    perfect = coco_metrics(ds, [det(0, [2, 3, 10, 8], 1), det(1, [4, 4, 14, 14], 2)])
    assert perfect["AP"] == pytest.approx(100.0) and perfect["AP50"] == pytest.approx(100.0)
    # image 1's box shifted by 3 px: IoU 7x10 / (100 + 100 - 70) = 0.538, a hit at those of COCO's ten thresholds
    # 0.50, 0.55, ..., 0.95 it reaches; class 1 stays a hit everywhere; AP is the mean over classes and thresholds
    iou = 70 / 130
    hits = sum(iou >= 0.5 + 0.05 * k - 1e-9 for k in range(10))
    shifted = coco_metrics(ds, [det(0, [2, 3, 10, 8], 1), det(1, [7, 4, 17, 14], 2)])
    assert shifted["AP50"] == pytest.approx(100.0) and shifted["AP"] == pytest.approx((100 + 100 * hits / 10) / 2)
    assert shifted["AP75"] == pytest.approx(50.0)  # class 1 hit, class 2 missed at IoU 0.75
    wrong_class = coco_metrics(ds, [det(0, [2, 3, 10, 8], 2), det(1, [4, 4, 14, 14], 1)])
    assert wrong_class["AP"] == pytest.approx(0.0)
    assert coco_metrics(ds, [])["AP"] == 0.0
