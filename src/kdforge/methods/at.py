"""`at`: attention transfer (Zagoruyko & Komodakis, ICLR 2017), p 2, weight 1000.

Each stage's spatial attention map, mean_c |f_c|^p flattened and L2-normalised, of the student is
pulled toward the teacher's at the same relative depth; maps of different sizes are pooled to match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.features import match_spatial, pair_stages, require_feature_maps, stage_shapes
from kdforge.models import model_info


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    return F.normalize(features.float().pow(p).mean(1).flatten(1), dim=1)


def at_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor], p: float = 2.0) -> torch.Tensor:
    """Sum over stage pairs of mean (a_s - a_t)^2 of the normalised attention maps."""
    total = student_features[0].new_zeros((), dtype=torch.float32)
    for fs, ft in zip(student_features, teacher_features):
        fs, ft = match_spatial(fs, ft)
        total = total + (attention_map(fs, p) - attention_map(ft, p)).pow(2).mean()
    return total


@dataclass
class ATConfig:
    ce_weight: float = 1.0
    at_weight: float = 1000.0
    p: float = 2.0

    def __post_init__(self):
        if self.at_weight < 0 or self.ce_weight < 0 or self.p <= 0:
            raise ConfigError("method_args: weights must be >= 0 and p positive")


class AT(Method):
    Config = ATConfig
    needs_teacher = True
    student_taps = ("stages",)
    teacher_taps = ("stages",)
    description = "attention transfer on every stage"

    def __init__(self, cfg: ATConfig, ctx):
        super().__init__(cfg, ctx)
        require_feature_maps(stage_shapes(ctx.student, ctx.input_shape), "student", "at")
        require_feature_maps(stage_shapes(ctx.teacher, ctx.input_shape), "teacher", "at")
        self.pairs = pair_stages(len(model_info(ctx.student).stages), len(model_info(ctx.teacher).stages))

    def forward(self, batch, student, teacher, state):
        fs = [student.features[f"stage{i}"] for i, _ in self.pairs]
        ft = [teacher.features[f"stage{j}"] for _, j in self.pairs]
        return {"ce": self.cfg.ce_weight * self.cross_entropy(student.logits, batch.target),
                "at": self.cfg.at_weight * at_loss(fs, ft, self.cfg.p)}
