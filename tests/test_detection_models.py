"""Detectors from torchvision on zoo and torchvision backbones (random init, trainable BatchNorm), and the RoI
class logits of given proposals read through the detector's public sub-modules."""

import pytest
import torch

from kdforge.errors import ConfigError

pytest.importorskip("torchvision")
from kdforge.models.detection import build_detector, roi_class_logits  # noqa: E402


def targets():
    return [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([3])},
            {"boxes": torch.tensor([[10.0, 20.0, 40.0, 50.0]]), "labels": torch.tensor([7])}]


@pytest.mark.parametrize("backbone", ["resnet8", "tv_resnet18"])
def test_a_detector_trains_from_scratch_on_either_backbone(backbone):
    torch.manual_seed(0)
    detector = build_detector(backbone, 10, 64).train()
    bn = [m for m in detector.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(m.weight.requires_grad for m in bn)  # not torchvision's frozen default
    losses = detector([torch.rand(3, 64, 64) for _ in range(2)], targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_roi_class_logits_of_given_proposals_are_per_proposal_and_include_background():
    torch.manual_seed(0)
    detector = build_detector("resnet8", 10, 64).eval()
    with torch.no_grad():
        images, _ = detector.transform([torch.rand(3, 64, 64)])
        features = detector.backbone(images.tensors)
        a, b = torch.tensor([[4.0, 4.0, 30.0, 30.0]]), torch.tensor([[0.0, 0.0, 12.0, 12.0]])
        both = roi_class_logits(detector, features, [torch.cat([a, b])], images.image_sizes)
        alone = roi_class_logits(detector, features, [a], images.image_sizes)
        # the same three public steps written out: RoI pooling, box head, class scores
        pooled = detector.roi_heads.box_roi_pool(features, [a], images.image_sizes)
        direct = detector.roi_heads.box_predictor.cls_score(detector.roi_heads.box_head(pooled))
    assert both.shape == (2, 11)  # 10 classes + background
    torch.testing.assert_close(both[:1], alone)
    torch.testing.assert_close(alone, direct)


def test_an_unknown_backbone_is_a_one_line_error():
    with pytest.raises(ConfigError, match="unknown detector backbone 'nope'"):
        build_detector("nope", 10, 64)
