"""`pkt`: probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), as mdistiller runs it on the pooled
embedding: cosine similarities within the batch mapped to [0, 1], normalised per row into conditional
probabilities, matched by KL(teacher || student) averaged over all B x B entries; CE 1, weight 30000
(mdistiller/engine/cfg.py CFG.PKT)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdforge.errors import ConfigError
from kdforge.methods.base import Method


def _conditional_probabilities(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float().flatten(1)
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    similarity = (x @ x.T + 1.0) / 2.0
    return similarity / similarity.sum(dim=1, keepdim=True)


def pkt_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """mean over the B x B entries of p_t * log((p_t + eps) / (p_s + eps)) (the official form)."""
    p_s = _conditional_probabilities(student_embedding, eps)
    p_t = _conditional_probabilities(teacher_embedding, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@dataclass
class PKTConfig:
    ce_weight: float = 1.0
    pkt_weight: float = 30000.0

    def __post_init__(self):
        if self.ce_weight < 0 or self.pkt_weight < 0:
            raise ConfigError("method_args: ce_weight and pkt_weight must be >= 0")


class PKT(Method):
    Config = PKTConfig
    needs_teacher = True
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)
    description = "probabilistic knowledge transfer on the pooled embedding"

    def forward(self, batch, student, teacher, state):
        return {"ce": self.cfg.ce_weight * self.cross_entropy(student.logits, batch.target),
                "pkt": self.cfg.pkt_weight * pkt_loss(student.features["embedding"], teacher.features["embedding"])}
