"""Two-stage detectors from torchvision (Faster R-CNN with FPN), on a torchvision ResNet or a kdforge zoo backbone,
randomly initialised; and the RoI class logits of *given* proposals, read through the detector's public
sub-modules (RoI pooling, box head, box predictor), so a teacher can be run on a student's sampled proposals.

Randomly initialised backbones train their BatchNorm (torchvision's FPN helper freezes it by default, which only
suits pretrained weights). `size` keeps the detector's internal resize at the data's canvas size; the CPU
defaults (a narrow FPN, few proposals and RoIs, a 256-d box head) keep a step affordable on two cores.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from kdforge.errors import ConfigError

# torchvision's MobileNetV2 `features` indices that end the stride-4, 8, 16 and 32 stages, and their widths
MOBILENET_V2_STAGES = {"3": 24, "6": 32, "13": 96, "18": 1280}


def _backbone(name: str, fpn_channels: int, first_level: int = 0):
    from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if name.startswith("tv_") and first_level:
        raise ConfigError(f"detector.first_level applies to zoo backbones; {name} keeps torchvision's FPN levels")
    if name.startswith("tv_resnet"):
        return resnet_fpn_backbone(backbone_name=name[3:], weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5)
    if name == "tv_mobilenet_v2":
        from torchvision.models import mobilenet_v2

        return BackboneWithFPN(mobilenet_v2(weights=None).features, {k: str(i) for i, k in enumerate(MOBILENET_V2_STAGES)},
                               list(MOBILENET_V2_STAGES.values()), fpn_channels, extra_blocks=LastLevelMaxPool())
    from kdforge.models import MODELS, create_model, model_info

    if name not in MODELS.names():
        raise ConfigError(f"unknown detector backbone {name!r}: a torchvision ResNet (tv_resnet18, tv_resnet50, ...), "
                          "tv_mobilenet_v2 "
                          "or a zoo model with declared stages (kdforge list models)")
    model = create_model(name, 10)
    stages = model_info(model).stages[first_level:]
    if not stages:
        raise ConfigError(f"zoo model {name!r} declares no stages; a detector backbone needs them")
    with torch.no_grad():  # the stages' channel counts, from one small forward
        outputs = {}
        hooks = [model.get_submodule(p).register_forward_hook(lambda m, i, o, p=p: outputs.__setitem__(p, o))
                 for p in stages]
        model.eval()(torch.zeros(1, 3, 32, 32))
        for h in hooks:
            h.remove()
    return BackboneWithFPN(model, {p: str(i) for i, p in enumerate(stages)}, [outputs[p].shape[1] for p in stages],
                           fpn_channels, extra_blocks=LastLevelMaxPool())


def build_detector(backbone: str, num_classes: int, size: int, *, fpn_channels: int = 64, proposals: int = 150,
                   rois_per_image: int = 64, box_head: int = 256, max_size: int | None = None,
                   anchor_size: int | None = None, train_sizes: list[int] | None = None,
                   backbone_weights: str | None = None, first_level: int = 0) -> nn.Module:
    """A Faster R-CNN with FPN; `num_classes` counts the objects' classes (background is added). Images are
    resized so that their shorter side is `size` (the longer at most `max_size`, by default `size`); in training,
    to a side drawn from `train_sizes` when given (multi-scale training). `backbone_weights`: a local file of
    the backbone network's weights (e.g. ImageNet-trained; its classifier is ignored). `first_level`: the zoo
    backbone's first stage the FPN reads (1 skips a CIFAR network's full-resolution stage)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    body = _backbone(backbone, fpn_channels, first_level)
    levels = [k for k in ("0", "1", "2", "3") if k in body.body.return_layers.values()]
    # one anchor size per feature map (the FPN levels plus the pooled one), doubling from 1/8 of the image side
    first = anchor_size or max(4, size // 8)
    sizes = tuple((first * 2 ** i,) for i in range(len(levels) + 1))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    pool = MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2)
    head = TwoMLPHead(body.out_channels * 7 * 7, box_head)
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    if backbone_weights:
        _load_backbone_weights(body.body, backbone_weights)
    # torchvision draws the training side from min_size and tests at its last entry: `size` goes last
    sides = tuple(s for s in (train_sizes or []) if s != size) + (size,)
    return FasterRCNN(body, num_classes=None, min_size=sides, max_size=max_size or size, rpn_anchor_generator=anchors,
                      box_roi_pool=pool, box_head=head,
                      box_predictor=FastRCNNPredictor(box_head, num_classes + 1),
                      rpn_pre_nms_top_n_train=2 * proposals, rpn_post_nms_top_n_train=proposals,
                      rpn_pre_nms_top_n_test=2 * proposals, rpn_post_nms_top_n_test=proposals,
                      box_batch_size_per_image=rois_per_image)


def _load_backbone_weights(body: nn.Module, path: str) -> None:
    """The backbone network's weights from a local file, by parameter name; what the detector's body lacks (the
    classifier) is ignored, what it has and the file lacks is an error."""
    from kdforge.engine.checkpoint import load_weights

    state, _ = load_weights(path)
    prefix = "features." if all(k.split(".")[0].isdigit() for k in body.state_dict()) else ""
    wanted = {k: state.get(prefix + k, state.get(k)) for k in body.state_dict()}
    missing = [k for k, v in wanted.items() if v is None and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(f"{path} lacks {len(missing)} backbone weights (first: {missing[0]}); is it this backbone's?")
    body.load_state_dict({k: v for k, v in wanted.items() if v is not None}, strict=False)


def roi_class_logits(detector: nn.Module, features: OrderedDict, proposals: list[torch.Tensor],
                     image_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """The class logits (sum of proposals x C + 1, background included) the detector's box head gives the given
    proposals (x1 y1 x2 y2 in the transformed images' coordinates) over its own FPN features."""
    heads = detector.roi_heads
    pooled = heads.box_roi_pool(features, proposals, image_sizes)
    logits, _ = heads.box_predictor(heads.box_head(pooled))
    return logits


class RoITaps:
    """What a detector's forward passes through its public sub-modules, recorded by hooks: the transformed images,
    the FPN's feature maps, the sampled proposals (and, in training, their assigned labels, 0 = background) and the RoI class logits.
    The labels come from a thin wrapper around the instance's `select_training_samples`; nothing is rewritten."""

    def __init__(self, detector: nn.Module):
        self.record: dict = {}
        heads = detector.roi_heads
        self.handles = [
            detector.transform.register_forward_hook(lambda m, i, o: self.record.__setitem__("images", o[0])),
            detector.backbone.register_forward_hook(lambda m, i, o: self.record.__setitem__("features", o)),
            heads.box_roi_pool.register_forward_pre_hook(self._pool_inputs),
            heads.box_predictor.register_forward_hook(lambda m, i, o: self.record.__setitem__("class_logits", o[0])),
        ]
        original = heads.select_training_samples

        def select(proposals, targets):
            out = original(proposals, targets)
            self.record["labels"] = torch.cat(out[2])
            return out

        heads.select_training_samples = select
        self._restore = lambda: heads.__dict__.pop("select_training_samples", None)

    def _pool_inputs(self, module, args):
        self.record["proposals"], self.record["image_sizes"] = args[1], args[2]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self._restore()


@torch.no_grad()
def teacher_roi_logits(teacher: nn.Module, record: dict, features: OrderedDict | None = None) -> torch.Tensor:
    """The frozen teacher's class logits on the student's sampled proposals, over the teacher's own backbone run on
    the images as the student's transform produced them (or over `features`, that backbone's output)."""
    if features is None:
        features = teacher.backbone(record["images"].tensors)
    return roi_class_logits(teacher, features, record["proposals"], record["image_sizes"])


def load_detector(checkpoint, image_size: int | None = None) -> tuple[nn.Module, dict]:
    """(the detector a detection run's checkpoint holds, weights loaded, in eval mode; the checkpoint's metadata).
    The checkpoint records the backbone, the classes and the detector's sizes, so nothing else is needed."""
    from kdforge.engine.checkpoint import load_into, load_weights

    state, meta = load_weights(checkpoint)
    if meta.get("task") != "detection" or "detector" not in meta:
        raise ConfigError(f"{checkpoint} is not a detection run's checkpoint (kdforge train with task=detection)")
    size = image_size or meta["image_size"]
    # the trained weights replace whatever initialised the backbone: no need for its original weight file
    detector = build_detector(meta["arch"], int(meta["num_classes"]), size,
                              **{**meta["detector"], "backbone_weights": None})
    load_into(detector, state, str(checkpoint))
    return detector.eval(), meta


# The logit methods on RoI class logits (C + 1 classes, background included), with the detection settings of the
# reference code (CKD's and mdistiller's Detectron2 configs): one formula for both tasks, the classification
# loss functions themselves. Box regression is not distilled.
ROI_DEFAULTS = {"kd": {"weight": 1.0, "temperature": 1.0},
                "dkd": {"weight": 1.0, "alpha": 1.0, "beta": 0.25, "temperature": 1.0},
                "ckd": {"weight": 0.1, "temperature": 1.0}}


def roi_distillation_term(method: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                          labels: torch.Tensor, **overrides) -> torch.Tensor:
    """The weighted distillation term of `method` over all sampled RoIs of the batch (CKD: all of them form its
    B x B matrix)."""
    from kdforge.methods.ckd import ckd_loss
    from kdforge.methods.dkd import dkd_loss
    from kdforge.methods.kd import kd_loss

    if method not in ROI_DEFAULTS:
        raise ConfigError(f"no RoI-logit distillation for {method!r}; choose one of {', '.join(ROI_DEFAULTS)}")
    unknown = set(overrides) - set(ROI_DEFAULTS[method])
    if unknown:
        raise ConfigError(f"{method} on RoI logits takes {', '.join(ROI_DEFAULTS[method])}, not {sorted(unknown)}")
    a = {**ROI_DEFAULTS[method], **overrides}
    if method == "kd":
        loss = kd_loss(student_logits, teacher_logits, a["temperature"])
    elif method == "dkd":
        loss = dkd_loss(student_logits, teacher_logits, labels, a["alpha"], a["beta"], a["temperature"])
    else:
        loss = ckd_loss(student_logits, teacher_logits, a["temperature"])
    return a["weight"] * loss
