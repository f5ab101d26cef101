"""`dist`: DIST, knowledge distillation from a stronger teacher (Huang et al., NeurIPS 2022).

Instead of matching the softened predictions point-wise (KL), DIST matches their *relations*: one minus the
Pearson correlation between the student's and the teacher's prediction rows (inter-class relation: per sample,
over the classes) and columns (intra-class relation: per class, over the batch).

The official code (image_classification_sota, lib/models/losses/dist_kd.py and kd_loss.py) always builds
DIST(beta=1, gamma=1, tau) and weights it by `kd_loss_weight` 2 beside CE at 1: CIFAR-100
(configs/strategies/distill/dist_cifar.yaml, `kd: dist_t4`) tau 4, ImageNet (resnet_dist.yaml, `kd: dist`) tau 1.
Here the outer weight is folded into beta and gamma: beta = gamma = 2 in both settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.logit_std import maybe_standardize


def _one_minus_pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - mean over rows of the Pearson correlation of a's and b's rows (the official eps in the cosine)."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return 1 - ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)).mean()


def dist_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 1.0, gamma: float = 1.0,
              tau: float = 1.0) -> torch.Tensor:
    """beta * tau^2 * inter + gamma * tau^2 * intra over softmax(z / tau); no CE inside."""
    p_s = (student_logits.float() / tau).softmax(dim=1)
    p_t = (teacher_logits.float() / tau).softmax(dim=1)
    inter = _one_minus_pearson(p_s, p_t)
    intra = _one_minus_pearson(p_s.T, p_t.T)
    return tau * tau * (beta * inter + gamma * intra)


@dataclass
class DISTConfig:
    ce_weight: float = 1.0
    beta: float = 2.0  # inter-class relation (the official 1 x kd_loss_weight 2)
    gamma: float = 2.0  # intra-class relation
    tau: float = 4.0  # CIFAR-100; ImageNet 1 (presets)
    logit_std: bool = False

    def __post_init__(self):
        if self.tau <= 0 or min(self.ce_weight, self.beta, self.gamma) < 0:
            raise ConfigError("method_args: tau must be positive and ce_weight, beta, gamma >= 0")


class DIST(Method):
    Config = DISTConfig
    needs_teacher = True
    description = "DIST: inter- and intra-class Pearson relations of the softened predictions"

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        s, t = maybe_standardize(c.logit_std, student.logits, teacher.logits)
        return {"ce": c.ce_weight * self.cross_entropy(student.logits, batch.target),
                "dist": dist_loss(s, t, c.beta, c.gamma, c.tau)}
