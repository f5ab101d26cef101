"""`kdsvd`: self-supervised KD with singular value decomposition (Lee et al., ECCV 2018), as RepDistiller's port of
the authors' TensorFlow code runs it. Each stage's features, as a (positions x channels) matrix per sample, are
decomposed; the teacher's top-k right singular vectors (the student's top k+3, sign-aligned to the teacher's
best-matching ones) are scaled by the teacher's normalised singular values, and the RBF-kernel relation between
consecutive stages' vectors is matched by squared error (summed, / B, over every stage after the first).
CE 1, weight 1, k 1 (mdistiller/engine/cfg.py CFG.KDSVD). mdistiller reshapes the features to
(channels*height x width) instead; the positions x channels layout here is the authors'. Paired stages need the
same channel count (the singular vectors live in channel space)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError, NotApplicableError
from kdforge.methods._feature_method import StagePairs
from kdforge.methods.features import match_spatial


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _top_singular(features: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised top-n singular values (B, n), their right singular vectors (B, C, n), each unit length)."""
    x = features.float().flatten(2).transpose(1, 2)  # (B, HW, C)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    s, v = _finite(s), _finite(vh.transpose(1, 2))
    return F.normalize(s[:, :n], dim=1), F.normalize(v[:, :, :n], dim=1)


def _align(student_vectors: torch.Tensor, teacher_vectors: torch.Tensor) -> torch.Tensor:
    """For each teacher vector, the student vector of largest |cosine|, with the cosine's sign."""
    cosine = student_vectors.transpose(1, 2) @ teacher_vectors  # (B, k+3, k)
    best = cosine.abs().amax(dim=1, keepdim=True)
    mask = torch.where(cosine.abs() == best, torch.sign(cosine), torch.zeros_like(cosine))
    return student_vectors @ mask


def kdsvd_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor], k: int = 1) -> torch.Tensor:
    total = student_features[0].new_zeros((), dtype=torch.float32)
    previous = None
    for fs, ft in zip(student_features, teacher_features):
        fs, ft = match_spatial(fs, ft)
        s_t, v_t = _top_singular(ft, k)
        _, v_s = _top_singular(fs, k + 3)
        v_s = _align(v_s, v_t)
        scale = s_t.unsqueeze(1)
        v_t, v_s = v_t * scale, v_s * scale
        if previous is not None:
            v_s_before, v_t_before = previous
            rbf_s = torch.exp(-(v_s.unsqueeze(2) - v_s_before.unsqueeze(1)).pow(2) / 8)
            rbf_t = torch.exp(-(v_t.unsqueeze(2) - v_t_before.unsqueeze(1)).pow(2) / 8)
            total = total + _finite((rbf_s - rbf_t.detach()).pow(2)).sum() / fs.shape[0]
        previous = (v_s, v_t)
    return total


@dataclass
class KDSVDConfig:
    ce_weight: float = 1.0
    kdsvd_weight: float = 1.0
    k: int = 1

    def __post_init__(self):
        if self.ce_weight < 0 or self.kdsvd_weight < 0 or self.k < 1:
            raise ConfigError("method_args: weights must be >= 0 and k >= 1")


class KDSVD(StagePairs):
    Config = KDSVDConfig
    description = "KD-SVD: RBF relations of consecutive stages' singular vectors"
    term = "kdsvd"

    def __init__(self, cfg: KDSVDConfig, ctx):
        super().__init__(cfg, ctx)
        widths = [(self.s_shapes[i][0], self.t_shapes[j][0]) for i, j in self.pairs]
        if any(s != t for s, t in widths):
            raise NotApplicableError(f"kdsvd compares singular vectors in channel space: paired stages need the same "
                              f"channel count, this pair has {widths}; pick another method or pair")

    def feature_loss(self, fs, ft):
        return kdsvd_loss(fs, ft, self.cfg.k)
