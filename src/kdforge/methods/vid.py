"""`vid`: variational information distillation (Ahn et al., CVPR 2019): per stage pair, a 3-layer 1x1-conv
regressor predicts the teacher's features from the student's as the mean of a Gaussian with a learned per-channel
variance softplus(log_scale) + eps, and the loss is its negative log-likelihood, averaged over every element and
summed over the pairs. CE 1, weight 1, initial variance 5, eps 1e-5 (mdistiller/engine/cfg.py CFG.VID).

The variances are trained here, as in the authors' code and RepDistiller; mdistiller keeps its `log_scales` in a
plain list that its optimiser never sees, so there they stay at the initial 5."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods._feature_method import StagePairs
from kdforge.methods.features import match_spatial


def vid_loss(predicted_mean: torch.Tensor, teacher_features: torch.Tensor, log_scale: torch.Tensor,
             eps: float = 1e-5) -> torch.Tensor:
    """mean of 0.5 * ((mu - t)^2 / var + log var), var = softplus(log_scale) + eps per channel."""
    var = (F.softplus(log_scale.float()) + eps).view(1, -1, 1, 1)
    return (0.5 * ((predicted_mean.float() - teacher_features.float()).pow(2) / var + torch.log(var))).mean()


def _regressor(s: int, t: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(s, t, 1, bias=False), nn.ReLU(), nn.Conv2d(t, t, 1, bias=False), nn.ReLU(),
                         nn.Conv2d(t, t, 1, bias=False))


@dataclass
class VIDConfig:
    ce_weight: float = 1.0
    vid_weight: float = 1.0
    init_pred_var: float = 5.0
    eps: float = 1e-5

    def __post_init__(self):
        if self.ce_weight < 0 or self.vid_weight < 0 or self.init_pred_var <= self.eps or self.eps <= 0:
            raise ConfigError("method_args: weights >= 0, eps > 0 and init_pred_var > eps")


class VID(StagePairs):
    Config = VIDConfig
    description = "variational information distillation: Gaussian NLL of the teacher's features, every stage"
    term = "vid"

    def __init__(self, cfg: VIDConfig, ctx):
        super().__init__(cfg, ctx)
        channels = [(self.s_shapes[i][0], self.t_shapes[j][0]) for i, j in self.pairs]
        self.regressors = nn.ModuleList(_regressor(s, t) for s, t in channels)
        # softplus(log_scale) + eps starts at init_pred_var
        start = math.log(math.expm1(cfg.init_pred_var - cfg.eps))
        self.log_scales = nn.ParameterList(nn.Parameter(torch.full((t,), start)) for _, t in channels)

    def feature_loss(self, fs, ft):
        total = fs[0].new_zeros(())
        for regressor, log_scale, s, t in zip(self.regressors, self.log_scales, fs, ft):
            s, t = match_spatial(s, t)
            total = total + vid_loss(regressor(s), t, log_scale, self.cfg.eps)
        return total
