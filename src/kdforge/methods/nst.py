"""`nst`: neuron selectivity transfer (Huang & Wang, 2017), as mdistiller runs it: per stage pair, the squared
MMD with a degree-2 polynomial kernel between the channels' spatial activation patterns (each L2-normalised over
positions), summed over the stages; CE 1, weight 50 (mdistiller/engine/cfg.py CFG.NST)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods._feature_method import StagePairs
from kdforge.methods.features import match_spatial


def _poly_mmd_term(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean over (i, j) of <a_i, b_j>^2 for (B, C, HW) channel patterns: the kernel's mean over channel pairs."""
    return torch.bmm(a, b.transpose(1, 2)).pow(2).mean()


def nst_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over stage pairs of MMD^2 = k(t, t) + k(s, s) - 2 k(s, t) with k(x, y) = <x, y>^2 (the teacher's
    own term is a constant)."""
    total = student_features[0].new_zeros((), dtype=torch.float32)
    for fs, ft in zip(student_features, teacher_features):
        fs, ft = match_spatial(fs.float(), ft.float())
        s = F.normalize(fs.flatten(2), dim=2)
        t = F.normalize(ft.flatten(2), dim=2)
        total = total + _poly_mmd_term(t, t).detach() + _poly_mmd_term(s, s) - 2 * _poly_mmd_term(s, t)
    return total


@dataclass
class NSTConfig:
    ce_weight: float = 1.0
    nst_weight: float = 50.0

    def __post_init__(self):
        if self.ce_weight < 0 or self.nst_weight < 0:
            raise ConfigError("method_args: ce_weight and nst_weight must be >= 0")


class NST(StagePairs):
    Config = NSTConfig
    description = "neuron selectivity transfer: polynomial-kernel MMD of channel patterns, every stage"
    term = "nst"


    def feature_loss(self, fs, ft):
        return nst_loss(fs, ft)
