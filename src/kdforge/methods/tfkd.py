"""`tfkd`: teacher-free KD (Yuan et al., "Revisiting Knowledge Distillation via Label Smoothing
Regularization", CVPR 2020), both forms:

* `virtual` (Tf-KD_reg, default): a manually designed teacher, probability `a` on the true class and
  (1 - a)/(K - 1) on the others, softened by softmax(./T). Loss (1 - alpha) CE + alpha * w * KL(p_d || p_s),
  KL averaged over the batch. (The original code averages the KL over batch *and* classes and multiplies by
  a per-dataset factor; `reg_weight` is that factor divided by the number of classes.)
* `self` (Tf-KD_self): the teacher is a pre-trained model of the student's own architecture
  (teacher_checkpoint=...), loss (1 - alpha) CE + alpha * w * T^2 KL(softmax(z_t/T) || softmax(z_s/T)), KL
  averaged over the batch. The original code again averages over batch and classes and multiplies by a per-model
  factor (50 for its ResNet18 on CIFAR-100, with alpha 0.95 and T 6); `self_weight` is that factor divided by the
  number of classes (0.5 there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.kd import kd_loss


def virtual_teacher(target: torch.Tensor, num_classes: int, correct_prob: float, temperature: float) -> torch.Tensor:
    """log of softmax(u / T), u = correct_prob on the true class and (1 - correct_prob)/(K - 1) elsewhere."""
    rest = (1.0 - correct_prob) / max(num_classes - 1, 1)
    u = torch.full((target.shape[0], num_classes), rest, device=target.device)
    u.scatter_(1, target.view(-1, 1), correct_prob)
    return F.log_softmax(u / temperature, dim=1)


@dataclass
class TfKDConfig:
    mode: str = "virtual"  # virtual (Tf-KD_reg) | self (Tf-KD_self, needs teacher_checkpoint)
    alpha: float = 0.1
    temperature: float = 20.0
    correct_prob: float = 0.99
    reg_weight: float = 1.0
    self_weight: float = 1.0

    def __post_init__(self):
        if self.mode not in ("virtual", "self"):
            raise ConfigError(f"method_args.mode must be virtual or self, got {self.mode!r}")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0 or not 0 < self.correct_prob < 1:
            raise ConfigError("method_args: alpha in [0, 1], temperature > 0, correct_prob in (0, 1)")


class TfKD(Method):
    Config = TfKDConfig
    description = "teacher-free KD: virtual teacher (default) or a pre-trained self-teacher"

    @classmethod
    def uses_teacher(cls, args: dict) -> bool:
        return args.get("mode", "virtual") == "self"

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        terms = {"ce": (1 - c.alpha) * self.cross_entropy(student.logits, batch.target)}
        if c.mode == "self":
            terms["kd"] = c.alpha * c.self_weight * kd_loss(student.logits, teacher.logits, c.temperature)
        else:
            log_p_d = virtual_teacher(batch.target, student.logits.shape[1], c.correct_prob, c.temperature)
            log_p_s = F.log_softmax(student.logits.float(), dim=1)
            kl = F.kl_div(log_p_s, log_p_d, reduction="batchmean", log_target=True)
            terms["reg"] = c.alpha * c.reg_weight * kl
        return terms
