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


def test_the_teacher_scores_the_students_sampled_proposals_box_by_box():
    from kdforge.models.detection import RoITaps, teacher_roi_logits

    torch.manual_seed(0)
    student, teacher = build_detector("resnet8", 10, 64).train(), build_detector("resnet14", 10, 64).eval()
    taps = RoITaps(student)
    student([torch.rand(3, 64, 64) for _ in range(2)], targets())
    rec = taps.record
    n = sum(len(p) for p in rec["proposals"])
    assert rec["class_logits"].shape == (n, 11) and rec["labels"].shape == (n,)
    assert set(rec["labels"].tolist()) <= {0, 3, 7} and {3, 7} <= set(rec["labels"].tolist())  # gt boxes sampled
    batched = teacher_roi_logits(teacher, rec)
    assert batched.shape == (n, 11)
    # each proposal alone, through the teacher's box head applied directly to that one box
    with torch.no_grad():
        features = teacher.backbone(rec["images"].tensors)
        rows = []
        for image, boxes in enumerate(rec["proposals"]):
            for box in boxes:
                only = [box[None] if i == image else box.new_zeros((0, 4)) for i in range(len(rec["proposals"]))]
                pooled = teacher.roi_heads.box_roi_pool(features, only, rec["image_sizes"])
                rows.append(teacher.roi_heads.box_predictor.cls_score(teacher.roi_heads.box_head(pooled)))
    torch.testing.assert_close(batched, torch.cat(rows), rtol=1e-4, atol=1e-5)
    taps.remove()
    assert "select_training_samples" not in student.roi_heads.__dict__


def test_roi_terms_are_the_classification_formulas_on_roi_logits():
    import torch.nn.functional as F

    from kdforge.models.detection import roi_distillation_term

    torch.manual_seed(0)
    s, t, labels = torch.randn(6, 11), torch.randn(6, 11), torch.tensor([0, 3, 0, 7, 0, 0])
    # KD, T 1: mean over RoIs of KL(softmax(t) || softmax(s))
    kl = (F.softmax(t, 1) * (F.log_softmax(t, 1) - F.log_softmax(s, 1))).sum(1).mean()
    torch.testing.assert_close(roi_distillation_term("kd", s, t, labels), kl)
    # DKD, T 1, alpha 1, beta 0.25: binary target/other KL + 0.25 x KL over the non-target classes
    pt, ps = F.softmax(t, 1), F.softmax(s, 1)
    gt = F.one_hot(labels, 11).bool()
    bt = torch.stack([pt[gt], 1 - pt[gt]], 1)
    bs = torch.stack([ps[gt], 1 - ps[gt]], 1)
    tckd = (bt * (bt.log() - bs.log())).sum(1).mean()
    nt = F.softmax(t.masked_fill(gt, -1e9), 1)
    ns = F.log_softmax(s.masked_fill(gt, -1e9), 1)
    nckd = (nt * (nt.clamp_min(1e-30).log() - ns)).sum(1).mean()
    torch.testing.assert_close(roi_distillation_term("dkd", s, t, labels), tckd + 0.25 * nckd, rtol=1e-4, atol=1e-5)
    # CKD, tau 1, weight 0.1: InfoNCE over the B x B cosine matrix, teacher rows anchored on student columns
    cos = F.normalize(t, dim=1) @ F.normalize(s, dim=1).T
    ckd = F.cross_entropy(cos, torch.arange(6))
    torch.testing.assert_close(roi_distillation_term("ckd", s, t, labels), 0.1 * ckd, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="takes weight, temperature"):
        roi_distillation_term("kd", s, t, labels, beta=1.0)


def test_first_level_skips_the_full_resolution_stage_of_a_zoo_backbone():
    torch.manual_seed(0)
    full, skipped = build_detector("resnet8", 10, 64), build_detector("resnet8", 10, 64, first_level=1, anchor_size=16)
    with torch.no_grad():
        images = torch.rand(1, 3, 64, 64)
        sizes = {k: v.shape[-1] for k, v in full.backbone(images).items()}
        assert sizes == {"0": 64, "1": 32, "2": 16, "pool": 8}  # CIFAR resnet8: strides 1, 2, 4
        assert {k: v.shape[-1] for k, v in skipped.backbone(images).items()} == {"0": 32, "1": 16, "pool": 8}
    assert skipped.rpn.anchor_generator.sizes == ((16,), (32,), (64,))
    with pytest.raises(ConfigError, match="first_level applies to zoo backbones"):
        build_detector("tv_resnet18", 10, 64, first_level=1)
