"""`ce`: plain supervised training with cross-entropy (teachers, and the no-distillation baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from kdforge.errors import ConfigError
from kdforge.methods.base import Method


@dataclass
class CEConfig:
    ce_weight: float = 1.0

    def __post_init__(self):
        if self.ce_weight <= 0:
            raise ConfigError(f"method_args.ce_weight must be positive, got {self.ce_weight}")


class CE(Method):
    Config = CEConfig
    description = "cross-entropy only (no teacher)"

    def forward(self, batch, student, teacher, state):
        return {"ce": self.cfg.ce_weight * self.cross_entropy(student.logits, batch.target)}
