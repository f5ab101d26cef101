"""`sp`: similarity-preserving KD (Tung & Mori, ICCV 2019), as mdistiller runs it: the batch's B x B Gram matrices
of the last stage's flattened features, each row L2-normalised, matched by squared Frobenius distance / B^2;
CE 1, weight 3000 (mdistiller/engine/cfg.py CFG.SP)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods._feature_method import StagePairs


def sp_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """||normalize_rows(S S^T) - normalize_rows(T T^T)||_F^2 / B^2 over the batch's flattened features."""
    b = student_features.shape[0]
    s, t = student_features.float().reshape(b, -1), teacher_features.float().reshape(b, -1)
    g_s, g_t = F.normalize(s @ s.T, dim=1), F.normalize(t @ t.T, dim=1)
    return (g_t - g_s).pow(2).sum() / (b * b)


@dataclass
class SPConfig:
    ce_weight: float = 1.0
    sp_weight: float = 3000.0

    def __post_init__(self):
        if self.ce_weight < 0 or self.sp_weight < 0:
            raise ConfigError("method_args: ce_weight and sp_weight must be >= 0")


class SP(StagePairs):
    Config = SPConfig
    description = "similarity-preserving KD: batch Gram matrices of the last stage"
    term = "sp"


    def feature_loss(self, fs, ft):
        return sp_loss(fs[-1], ft[-1])
