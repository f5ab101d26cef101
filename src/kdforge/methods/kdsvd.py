"""`kdsvd`: self-supervised KD with singular value decomposition (Lee et al., ECCV 2018), as RepDistiller's port of
the authors' TensorFlow code runs it. Each stage's features, as a (positions x channels) matrix per sample, are
decomposed; the teacher's top-k right singular vectors (the student's top k+3, sign-aligned to the teacher's
best-matching ones) are scaled by the teacher's normalised singular values, and the RBF-kernel relation between
consecutive stages' vectors is matched by squared error (summed, / B, over every stage after the first).
CE 1, weight 1, k 1 (mdistiller/engine/cfg.py CFG.KDSVD). mdistiller reshapes the features to
(channels*height x width) instead; the positions x channels layout here is the authors'. Paired stages need the
same channel count (the singular vectors live in channel space). The SVD's gradient is the authors' own
(`TruncatedSVD`), not autograd's, which is infinite wherever singular values repeat."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError, NotApplicableError
from kdforge.methods._feature_method import StagePairs
from kdforge.methods.features import match_spatial

# the authors' SVD gradient flows through this many leading singular triplets (their `num_vec + 1`)
GRAD_VECTORS = 5


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _finite_samples(x: torch.Tensor) -> torch.Tensor:
    """Non-finite entries zeroed, and every entry of a sample (first dimension) that had one."""
    whole = torch.isfinite(x).flatten(1).all(dim=1).view(-1, *[1] * (x.dim() - 1))
    return _finite(x) * whole


def _sym(x: torch.Tensor) -> torch.Tensor:
    return (x + x.transpose(1, 2)) / 2


class TruncatedSVD(torch.autograd.Function):
    """(singular values (B, r), right singular vectors (B, N, r)) of a batch of (B, M, N) matrices, with the gradient
    the authors register for their SVD (SSKD_SVD nets/Distillation.py): the right singular vectors' gradient alone,
    carried by the leading GRAD_VECTORS triplets, a sample's 1 / (s_i^2 - s_j^2) couplings zeroed where any is not
    finite, and no gradient for a sample whose gradient is not finite. Reconstructed in one point: their finiteness
    mask also reads the diagonal, where 1 / 0 is always infinite, so as written it zeroes every coupling (and the
    whole gradient of a matrix with at least as many rows as columns); here it reads the off-diagonal couplings.
    autograd's own SVD gradient is infinite wherever two singular values coincide (the zero singular values of a
    feature map with dead channels): one such step turns the student's weights to NaN within the first epoch."""

    @staticmethod
    def forward(ctx, x):
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        v = vh.transpose(1, 2)
        ctx.save_for_backward(u, s, v)
        return s, v

    @staticmethod
    def backward(ctx, grad_s, grad_v):
        u, s, v = ctx.saved_tensors
        k = min(GRAD_VECTORS, s.shape[1])
        u, s, v, dv = u[..., :k], s[:, :k], v[..., :k], grad_v[..., :k]
        s2 = s.square()
        off = ~torch.eye(k, dtype=torch.bool, device=s.device)
        gap = torch.where(off, s2.unsqueeze(2) - s2.unsqueeze(1), torch.ones_like(s2).unsqueeze(2))
        coupling = _finite_samples(1.0 / gap) * off  # (i, j): 1 / (s_i^2 - s_j^2), 0 on the diagonal
        big_s = torch.diag_embed(s)
        if u.shape[1] < v.shape[1]:  # fewer rows than columns
            d = dv / s.unsqueeze(1)
            vs = v @ big_s
            grad = (u @ d.transpose(1, 2)
                    - u @ torch.diag_embed(torch.diagonal(d.transpose(1, 2) @ v, dim1=1, dim2=2)) @ v.transpose(1, 2)
                    - 2 * u @ _sym(coupling * (vs.transpose(1, 2) @ d)) @ vs.transpose(1, 2))
        else:
            grad = 2 * u @ big_s @ _sym(coupling.transpose(1, 2) * (v.transpose(1, 2) @ dv)) @ v.transpose(1, 2)
        return _finite_samples(grad)


def _top_singular(features: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised top-n singular values (B, n), their right singular vectors (B, C, n), each unit length)."""
    x = features.float().flatten(2).transpose(1, 2)  # (B, HW, C)
    s, v = TruncatedSVD.apply(x)
    s, v = _finite(s), _finite(v)
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
