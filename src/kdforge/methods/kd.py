"""`kd`: Hinton et al.'s knowledge distillation, w_ce * CE + w_kd * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)).

Defaults follow the CIFAR-100 KD grid: T 4, w_ce 0.1, w_kd 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.logit_std import maybe_standardize


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over classes and averaged over the batch.

    Computed in float32 from log-probabilities, so it stays finite under bf16 autocast.
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (t * t)


def kd_term(weight: float, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            logit_std: bool = False) -> torch.Tensor:
    """The one "method + KD" mechanism: `weight` x Hinton KD at `temperature` (on standardised logits when
    `logit_std`), the term CRD+KD, KR+KD (`kr_kd`, a preset of `kr`) and IC-KD add to their own."""
    from kdforge.methods.logit_std import maybe_standardize

    return weight * kd_loss(*maybe_standardize(logit_std, student_logits, teacher_logits), temperature)


@dataclass
class KDConfig:
    temperature: float = 4.0
    ce_weight: float = 0.1
    kd_weight: float = 0.9
    logit_std: bool = False  # z-score both models' logits before the temperature (LogitStd)

    def __post_init__(self):
        if self.temperature <= 0:
            raise ConfigError(f"method_args.temperature must be positive, got {self.temperature}")
        if self.ce_weight < 0 or self.kd_weight < 0:
            raise ConfigError("method_args.ce_weight and method_args.kd_weight must be >= 0")


class KD(Method):
    Config = KDConfig
    needs_teacher = True
    description = "Hinton KD: CE + T^2 KL on softened logits"

    def forward(self, batch, student, teacher, state):
        s, t = maybe_standardize(self.cfg.logit_std, student.logits, teacher.logits)
        return {
            "ce": self.cfg.ce_weight * self.cross_entropy(student.logits, batch.target),
            "kd": self.cfg.kd_weight * kd_loss(s, t, self.cfg.temperature),
        }
