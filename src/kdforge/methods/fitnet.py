"""`fitnet`: FitNets hints (Romero et al., ICLR 2015), weight 100.

A learned regressor (1x1 conv + BN + ReLU) maps the student's middle-stage features to the teacher's
middle-stage width; the hint loss is their mean squared error. Shapes come from a dummy forward, so any
zoo pair works without a shape table. `hint_epochs > 0` gives the two-phase recipe: only the hint loss for
those epochs (which trains the student up to the hint layer), then CE + hint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.features import match_spatial, require_feature_maps, stage_shapes


@dataclass
class FitNetConfig:
    ce_weight: float = 1.0
    hint_weight: float = 100.0
    hint_epochs: int = 0

    def __post_init__(self):
        if self.hint_weight < 0 or self.ce_weight < 0 or self.hint_epochs < 0:
            raise ConfigError("method_args: weights and hint_epochs must be >= 0")


class FitNet(Method):
    Config = FitNetConfig
    needs_teacher = True
    student_taps = ("stages",)
    teacher_taps = ("stages",)
    description = "FitNets hint on the middle stage with a learned 1x1 regressor"

    def __init__(self, cfg: FitNetConfig, ctx):
        super().__init__(cfg, ctx)
        s_shapes, t_shapes = stage_shapes(ctx.student, ctx.input_shape), stage_shapes(ctx.teacher, ctx.input_shape)
        require_feature_maps(s_shapes, "student", "fitnet")
        require_feature_maps(t_shapes, "teacher", "fitnet")
        self.s_stage, self.t_stage = len(s_shapes) // 2, len(t_shapes) // 2
        s_ch, t_ch = s_shapes[self.s_stage][0], t_shapes[self.t_stage][0]
        self.regressor = nn.Sequential(nn.Conv2d(s_ch, t_ch, 1, bias=False), nn.BatchNorm2d(t_ch), nn.ReLU(inplace=True))

    def forward(self, batch, student, teacher, state):
        hint_s = self.regressor(student.features[f"stage{self.s_stage}"].float())
        hint_s, hint_t = match_spatial(hint_s, teacher.features[f"stage{self.t_stage}"].float())
        hint = self.cfg.hint_weight * F.mse_loss(hint_s, hint_t)
        ce = self.cfg.ce_weight * self.cross_entropy(student.logits, batch.target)
        if state.epoch < self.cfg.hint_epochs:
            # hint phase: CE takes no part (detached zero), so only the layers up to the hint receive gradients
            return {"ce": ce.detach() * 0.0, "hint": hint}
        return {"ce": ce, "hint": hint}
