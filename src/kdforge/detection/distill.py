"""Distillation of a two-stage detector, as the reference detection code runs it (CKD's and mdistiller's, on
Detectron2): the student's own detection losses, plus

- a logit term (`kd`, `dkd`, `ckd`) on the RoI class logits (C + 1, background included) of the student's sampled
  proposals, the frozen teacher's box head run on those same proposals over the teacher's own FPN features, the
  proposals' assigned classes as labels (`kdforge.models.detection.roi_distillation_term`: the classification
  loss functions themselves);
- ReviewKD's feature term: the student's FPN maps fused deepest-first by attention-based fusion (ABF) modules and
  compared with the teacher's FPN maps by the hierarchical context loss (weight 1.2; mdistiller
  detection/configs/ReviewKD/*.yaml and DKD/ReviewDKD-*.yaml). The reference code reads the maps its FPN backbone
  returns (p2-p6, 256 channels each, detection/model/rcnn.py), i.e. the FPN's outputs.

Box regression is not distilled. Registered names: ce (no distillation), kd, dkd, ckd, reviewkd, reviewkd+dkd,
reviewkd+ckd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdforge.distiller import DistillerOutput
from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.reviewkd import ABF, hcl_loss
from kdforge.models.detection import ROI_DEFAULTS, RoITaps, roi_class_logits, roi_distillation_term
from kdforge.models.taps import ModelOutput
from kdforge.registry import Registry


@dataclass(frozen=True)
class DetectionRecipe:
    roi: str | None  # the logit term on RoI class logits (kd, dkd, ckd) or none
    review: bool  # ReviewKD's FPN feature term


DETECTION_METHODS: Registry[DetectionRecipe] = Registry("detection method")
for _name, _recipe in {"ce": DetectionRecipe(None, False), "kd": DetectionRecipe("kd", False),
                       "dkd": DetectionRecipe("dkd", False), "ckd": DetectionRecipe("ckd", False),
                       "reviewkd": DetectionRecipe(None, True), "reviewkd+dkd": DetectionRecipe("dkd", True),
                       "reviewkd+ckd": DetectionRecipe("ckd", True)}.items():
    DETECTION_METHODS.add(_name, _recipe)

REVIEWKD_WEIGHT = 1.2  # mdistiller detection configs, REVIEWKD LOSS_WEIGHT
# torchvision's loss names -> the run's term names
DETECTOR_TERMS = {"loss_classifier": "classifier", "loss_box_reg": "box_reg", "loss_objectness": "objectness",
                  "loss_rpn_box_reg": "rpn_box_reg"}


def check_method_args(method: str, args: dict) -> None:
    """One line for a method argument the detection method does not take (before any step runs)."""
    recipe = DETECTION_METHODS.get(method)
    allowed = set(ROI_DEFAULTS.get(recipe.roi, {})) | ({"reviewkd_weight"} if recipe.review else set())
    unknown = sorted(set(args) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "no method_args"
        raise ConfigError(f"detection method {method!r} takes {takes}; not {', '.join(unknown)}")


class FPNReview(nn.Module):
    """ReviewKD's fusion over FPN levels (deepest first), predicting each teacher FPN map from the student's."""

    def __init__(self, levels: int, student_channels: int, teacher_channels: int):
        super().__init__()
        self.abfs = nn.ModuleList(ABF(student_channels, student_channels, teacher_channels, fuse=k < levels - 1)
                                  for k in reversed(range(levels)))

    def forward(self, student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> torch.Tensor:
        predictions, residual = [], None
        for abf, x, target in zip(self.abfs, reversed(student_maps), reversed(teacher_maps)):
            prediction, residual = abf(x, residual)
            if prediction.shape[-2:] != target.shape[-2:]:  # backbones of other strides
                prediction = F.interpolate(prediction, target.shape[-2:], mode="nearest")
            predictions.insert(0, prediction)
        return hcl_loss(predictions, teacher_maps)


class DetectionMethod(Method):
    """The distillation terms of one detection method, from what the student's forward recorded (RoITaps) and
    the frozen teacher; owns ReviewKD's fusion modules when it has the feature term."""

    def __init__(self, method: str, args: dict, student: nn.Module, teacher: nn.Module | None):
        nn.Module.__init__(self)
        check_method_args(method, args)
        self.recipe = DETECTION_METHODS.get(method)
        self.roi_args = {k: v for k, v in args.items() if k != "reviewkd_weight"}
        self.reviewkd_weight = float(args.get("reviewkd_weight", REVIEWKD_WEIGHT))
        self.cfg, self.label_smoothing = dict(args), 0.0
        self.review = None
        if self.recipe.review:
            levels = len(student.backbone.fpn.layer_blocks) + 1  # the FPN levels and the pooled one
            if len(teacher.backbone.fpn.layer_blocks) + 1 != levels:
                raise ConfigError("reviewkd on detectors needs as many FPN levels in the student as in the teacher; "
                                  "pick backbones with the same stage count")
            self.review = FPNReview(levels, student.backbone.out_channels, teacher.backbone.out_channels)

    def settings(self) -> dict:
        """The arguments given, with ReviewKD's weight resolved where the method has the feature term (the RoI
        terms' own defaults are their classification loss functions')."""
        return {**self.cfg, **({"reviewkd_weight": self.reviewkd_weight} if self.recipe.review else {})}

    def forward(self, record: dict, teacher: nn.Module | None) -> dict[str, torch.Tensor]:
        if teacher is None:
            return {}
        with torch.no_grad():
            t_features = teacher.backbone(record["images"].tensors)
        terms = {}
        if self.recipe.roi:
            with torch.no_grad():
                t_logits = roi_class_logits(teacher, t_features, record["proposals"], record["image_sizes"])
            terms[self.recipe.roi] = roi_distillation_term(self.recipe.roi, record["class_logits"], t_logits,
                                                           record["labels"], **self.roi_args)
        if self.review is not None:
            terms["reviewkd"] = self.reviewkd_weight * self.review(list(record["features"].values()),
                                                                   [f.detach() for f in t_features.values()])
        return terms


class DetectionDistiller(nn.Module):
    """The detection counterpart of `kdforge.Distiller`: calling it with (images, targets) trains the student
    detector's own losses plus the method's terms. The teacher is frozen and never a submodule."""

    def __init__(self, teacher: nn.Module | None, student: nn.Module, method: str = "ce", **method_args):
        super().__init__()
        recipe = DETECTION_METHODS.get(method)
        if (recipe.roi or recipe.review) and teacher is None:
            raise ConfigError(f"detection method {method!r} needs a teacher: set teacher_checkpoint=RUN (a detection run)")
        self.method_name, self.student = method, student
        object.__setattr__(self, "teacher", teacher)
        object.__setattr__(self, "teacher_forward", teacher)
        self.teacher_folded = 0  # the detector's teacher runs as trained (its box head reads given proposals)
        self.teacher_channels_last = False
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        # ReviewKD's fusion modules live where the student does (a GPU run builds the detector there first)
        self.method = DetectionMethod(method, method_args, student, teacher).to(next(student.parameters()).device)
        self.taps = RoITaps(student)
        self.runner = student

    def wrap_student(self, runner: nn.Module | None) -> None:
        """Run the student through `runner` (its DistributedDataParallel wrapper); the taps stay on the student."""
        self.runner = runner if runner is not None else self.student

    def parameters(self, recurse: bool = True):
        return (p for p in super().parameters(recurse) if p.requires_grad)

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.parameters()), "lr_scale": 1.0}]

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> tuple[DistillerOutput, torch.Tensor]:
        """(the loss and its named terms, with the RoI class logits as the student's output; the RoIs' assigned
        classes, what the meter scores those logits against)."""
        losses = self.runner(images, targets)
        terms = {DETECTOR_TERMS.get(k, k): v for k, v in losses.items()}
        record = self.taps.record
        terms.update(self.method(record, self.teacher))
        logits = record["class_logits"]
        return DistillerOutput(sum(terms.values()), terms, ModelOutput(logits, {})), record["labels"]

    def after_step(self) -> None:
        """Nothing deferred (the trainer's contract)."""

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self
