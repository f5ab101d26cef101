"""`rkd`: relational knowledge distillation (Park et al., CVPR 2019), distance 25 + angle 50.

The student's embeddings must reproduce the teacher's pairwise distances (normalised by their mean) and
the angles of every triplet; only relations within each model are compared, so widths may differ and the
teacher may have been trained on other classes than the student.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method


def _distances(emb: torch.Tensor) -> torch.Tensor:
    squared = emb.pow(2).sum(1)
    d = (squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * emb @ emb.T).clamp_min(1e-12).sqrt()
    return d * (1 - torch.eye(emb.shape[0], device=emb.device, dtype=emb.dtype))


def _normalised_distances(emb: torch.Tensor) -> torch.Tensor:
    d = _distances(emb)
    b = emb.shape[0]
    return d / (d.sum() / (b * (b - 1))).clamp_min(1e-12)  # mean over distinct pairs, no boolean indexing


def _angles(emb: torch.Tensor) -> torch.Tensor:
    directions = F.normalize(emb.unsqueeze(0) - emb.unsqueeze(1), dim=2)
    return torch.bmm(directions, directions.transpose(1, 2)).flatten()


def rkd_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, distance_weight: float = 25.0,
             angle_weight: float = 50.0) -> torch.Tensor:
    s, t = student_emb.float().flatten(1), teacher_emb.float().flatten(1)
    with torch.no_grad():
        t_dist, t_angle = _normalised_distances(t), _angles(t)
    loss = distance_weight * F.smooth_l1_loss(_normalised_distances(s), t_dist)
    return loss + angle_weight * F.smooth_l1_loss(_angles(s), t_angle)


@dataclass
class RKDConfig:
    ce_weight: float = 1.0
    rkd_weight: float = 1.0
    distance_weight: float = 25.0
    angle_weight: float = 50.0

    def __post_init__(self):
        if min(self.ce_weight, self.rkd_weight, self.distance_weight, self.angle_weight) < 0:
            raise ConfigError("method_args: RKD weights must be >= 0")


class RKD(Method):
    Config = RKDConfig
    needs_teacher = True
    teacher_classes_may_differ = True
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)
    description = "relational KD: pairwise distances and triplet angles of the embeddings"

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        return {"ce": c.ce_weight * self.cross_entropy(student.logits, batch.target),
                "rkd": c.rkd_weight * rkd_loss(student.features["embedding"], teacher.features["embedding"],
                                               c.distance_weight, c.angle_weight)}
