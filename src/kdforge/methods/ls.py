"""`ls`: label smoothing as a method (Szegedy et al., 2016): CE against (1 - eps) one-hot + eps uniform.

The reference row for the view of KD as learned label smoothing (Yuan et al., CVPR 2020; IC-KD)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method


@dataclass
class LSConfig:
    smoothing: float = 0.1

    def __post_init__(self):
        if not 0 <= self.smoothing < 1:
            raise ConfigError(f"method_args.smoothing must be in [0, 1), got {self.smoothing}")


class LabelSmoothing(Method):
    Config = LSConfig
    description = "label smoothing (uniform, eps 0.1)"

    def forward(self, batch, student, teacher, state):
        return {"ce": F.cross_entropy(student.logits.float(), batch.target, label_smoothing=self.cfg.smoothing)}
