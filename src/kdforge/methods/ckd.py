"""`ckd`: contrastive knowledge distillation from a sample-wise perspective (Zhu et al., arXiv 2404.14109).

Each sample's teacher logits must be closer (in cosine) to the same sample's student logits than to the
other samples' of the batch: a row-wise InfoNCE over the B x B teacher-row / student-column cosine
matrix with the diagonal as target. No KL term, no projection head, no extra parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method

NEGATIVES = ("teacher-student", "student-student")


def ckd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
             negatives: str = "teacher-student", symmetric: bool = False) -> torch.Tensor:
    """Batch mean of -log softmax_j(cos(t_i, s_j)/tau)[i] (the code's form).

    `negatives="student-student"` puts cos(s_i, s_j), j != i, in the denominator instead;
    `symmetric=True` (teacher-student negatives only) averages the teacher-anchored and the
    student-anchored rows.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if symmetric and negatives != "teacher-student":
        raise ValueError("the symmetric form is defined for teacher-student negatives")
    s = F.normalize(student_logits.float(), dim=1, eps=1e-12)
    t = F.normalize(teacher_logits.float(), dim=1, eps=1e-12)
    target = torch.arange(s.shape[0], device=s.device)
    if negatives == "student-student":
        sim = s @ s.T
        sim = sim - torch.diag_embed(sim.diagonal()) + torch.diag_embed((t * s).sum(1))
        return F.cross_entropy(sim / temperature, target)
    sim = (t @ s.T) / temperature  # rows: teacher sample i; columns: student sample j
    loss = F.cross_entropy(sim, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(sim.T, target))
    return loss


@dataclass
class CKDConfig:
    ce_weight: float = 1.0
    ckd_weight: float = 10.0  # lambda_CKD: 10 for resnet56->resnet20-like pairs, 100/50 for others (presets)
    temperature: float = 1.0
    negatives: str = "teacher-student"
    symmetric: bool = False

    def __post_init__(self):
        if self.temperature <= 0 or self.ckd_weight < 0 or self.ce_weight < 0:
            raise ConfigError("method_args.temperature must be positive and the weights >= 0")
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"method_args.negatives must be one of {', '.join(NEGATIVES)}, got {self.negatives!r}")
        if self.symmetric and self.negatives != "teacher-student":
            raise ConfigError("method_args.symmetric needs negatives=teacher-student")


class CKD(Method):
    Config = CKDConfig
    needs_teacher = True
    description = "sample-wise contrastive KD: InfoNCE over teacher/student logit cosines"

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        return {
            "ce": c.ce_weight * self.cross_entropy(student.logits, batch.target),
            "ckd": c.ckd_weight * ckd_loss(student.logits, teacher.logits, c.temperature, c.negatives, c.symmetric),
        }
