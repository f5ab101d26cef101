"""`dkd`: decoupled knowledge distillation (Zhao et al., CVPR 2022), as in mdistiller.

KD split into target-class KD (binary: target vs the rest) and non-target-class KD (the distribution
over the other classes), alpha * TCKD + beta * NCKD, each T^2-scaled and batch-averaged, with a linear
warm-up of the distillation term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.logit_std import maybe_standardize


def _non_target_columns(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C-1) indices of every class but the target, built on the device without a host sync."""
    cols = torch.arange(num_classes - 1, device=target.device).unsqueeze(0)
    return cols + (cols >= target.unsqueeze(1)).long()


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
             alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0) -> torch.Tensor:
    """alpha * TCKD + beta * NCKD (before any warm-up scaling).

    Works in log space throughout: the binary target/non-target log-masses come from log-sum-exps and
    the non-target distribution from a log-softmax over the gathered non-target columns, so no log of a
    probability is ever taken and the loss stays finite under bf16 autocast.
    """
    t = float(temperature)
    zs, zt = student_logits.float() / t, teacher_logits.float() / t
    others = _non_target_columns(target, zs.shape[1])
    tgt = target.unsqueeze(1)

    def binary_log_mass(z):
        lse_all = torch.logsumexp(z, dim=1)
        return torch.stack([z.gather(1, tgt).squeeze(1) - lse_all, torch.logsumexp(z.gather(1, others), 1) - lse_all], 1)

    log_bs, log_bt = binary_log_mass(zs), binary_log_mass(zt)
    tckd = (log_bt.exp() * (log_bt - log_bs)).sum(1).mean() * t * t
    log_ns = F.log_softmax(zs.gather(1, others), dim=1)
    log_nt = F.log_softmax(zt.gather(1, others), dim=1)
    nckd = (log_nt.exp() * (log_nt - log_ns)).sum(1).mean() * t * t
    return alpha * tckd + beta * nckd


@dataclass
class DKDConfig:
    ce_weight: float = 1.0
    alpha: float = 1.0
    beta: float = 8.0  # 2 for resnet56->resnet20 / resnet110->resnet32, 6 for vgg13->vgg8 and wrn pairs (presets)
    temperature: float = 4.0
    warmup_epochs: float = 20.0  # linear ramp of the DKD term: min((epoch + 1) / warmup, 1)
    logit_std: bool = False  # z-score both models' logits before the temperature (LogitStd)

    def __post_init__(self):
        if self.temperature <= 0 or self.alpha < 0 or self.beta < 0 or self.warmup_epochs < 0:
            raise ConfigError("method_args: temperature must be positive; alpha, beta, warmup_epochs >= 0")


class DKD(Method):
    Config = DKDConfig
    needs_teacher = True
    description = "decoupled KD: alpha TCKD + beta NCKD with warm-up"

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        ramp = min((state.epoch + 1) / c.warmup_epochs, 1.0) if c.warmup_epochs > 0 else 1.0
        s, t = maybe_standardize(c.logit_std, student.logits, teacher.logits)
        return {
            "ce": c.ce_weight * self.cross_entropy(student.logits, batch.target),
            "dkd": ramp * dkd_loss(s, t, batch.target, c.alpha, c.beta, c.temperature),
        }
