"""`ckd`: contrastive knowledge distillation from a sample-wise perspective (Zhu et al., arXiv 2404.14109).

Each sample's teacher logits must be closer (in cosine) to the same sample's student logits than to the
other samples' of the batch: a row-wise InfoNCE over the B x B teacher-row / student-column cosine
matrix with the diagonal as target. No KL term, no projection head, no extra parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.collective import gather_batch, rank_offset
from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.logit_std import maybe_standardize

NEGATIVES = ("teacher-student", "student-student")


def ckd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
             negatives: str = "teacher-student", symmetric: bool = False) -> torch.Tensor:
    """Batch mean of -log softmax_j(cos(t_i, s_j)/tau)[i] (the code's form).

    `negatives="student-student"` puts cos(s_i, s_j), j != i, in the denominator instead;
    `symmetric=True` (teacher-student negatives only) averages the teacher-anchored and the
    student-anchored rows.
    """
    return ckd_rows(student_logits, teacher_logits, student_logits, teacher_logits, 0, temperature, negatives,
                    symmetric)


def ckd_rows(student_rows: torch.Tensor, teacher_rows: torch.Tensor, student_all: torch.Tensor,
             teacher_all: torch.Tensor, offset: int, temperature: float, negatives: str, symmetric: bool) -> torch.Tensor:
    """CKD for the anchors `*_rows` (samples offset..offset+b-1 of the batch) against the whole batch `*_all`.
    With every process's logits gathered, each process computes its own rows against the global batch."""
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if symmetric and negatives != "teacher-student":
        raise ValueError("the symmetric form is defined for teacher-student negatives")
    s_rows, t_rows = F.normalize(student_rows.float(), dim=1, eps=1e-12), F.normalize(teacher_rows.float(), dim=1, eps=1e-12)
    s_all, t_all = F.normalize(student_all.float(), dim=1, eps=1e-12), F.normalize(teacher_all.float(), dim=1, eps=1e-12)
    target = offset + torch.arange(s_rows.shape[0], device=s_rows.device)
    if negatives == "student-student":
        sim = s_rows @ s_all.T
        positive = (t_rows * s_rows).sum(1, keepdim=True)
        sim = sim.scatter(1, target.unsqueeze(1), positive)  # the positive replaces cos(s_i, s_i)
        return F.cross_entropy(sim / temperature, target)
    loss = F.cross_entropy((t_rows @ s_all.T) / temperature, target)  # rows: teacher sample; columns: students
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy((s_rows @ t_all.T) / temperature, target))
    return loss


@dataclass
class CKDConfig:
    ce_weight: float = 1.0
    ckd_weight: float = 10.0  # lambda_CKD: 10 for resnet56->resnet20-like pairs, 100/50 for others (presets)
    temperature: float = 1.0
    negatives: str = "teacher-student"
    symmetric: bool = False
    gather: bool = True  # under torchrun: negatives from the global batch (False: each process's own batch)
    logit_std: bool = False  # z-score both models' logits first (LogitStd)

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

    def __init__(self, cfg: CKDConfig, ctx):
        super().__init__(cfg, ctx)
        self.global_negatives = cfg.gather and ctx.world_size > 1

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        s, t = maybe_standardize(c.logit_std, student.logits, teacher.logits)
        if self.global_negatives:
            contrast = ckd_rows(s, t, gather_batch(s), gather_batch(t), rank_offset(s.shape[0]), c.temperature,
                                c.negatives, c.symmetric)
        else:
            contrast = ckd_loss(s, t, c.temperature, c.negatives, c.symmetric)
        return {"ce": c.ce_weight * self.cross_entropy(student.logits, batch.target), "ckd": c.ckd_weight * contrast}
