"""REFILLED's two losses (Ye, Lu, Zhan, CVPR 2020; TPAMI 2022), as pure functions.

Stage 1, comparison matching: for semi-hard triplets mined with the *student's* distances, the teacher's
and the student's softmax over [-d(a,p), -d(a,n_1), ..., -d(a,n_K)] / tau are matched by KL(q^T || q^S);
only distances within one model are compared, so the two embeddings may have different widths.
Stage 2, the teacher's embedding-induced classifier: scores <f_t(x), c_k> against the teacher's centres of
the student's classes give soft labels over the batch's classes for the student's logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASKED = -1e4  # a finite stand-in for -inf: exp underflows to 0, and 0 * (finite) stays 0 in the KL


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean (not squared) distances between L2-normalised embeddings; exact zeros on the diagonal."""
    e = F.normalize(emb.float(), dim=1)
    squared = (2 - 2 * e @ e.T).clamp_min(0)
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return squared.masked_fill(eye, 0).add(1e-12).sqrt().masked_fill(eye, 0)


def semi_hard_mask(student_dist: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """(B, B, B) boolean: [a, p, n] is a semi-hard triplet under the given distances:
    y_a = y_p, a != p, y_n != y_a and 0 < d(a,n) - d(a,p) <= margin."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    positive = same & ~eye  # [a, p]
    negative = ~same  # [a, n]
    gap = student_dist.unsqueeze(1) - student_dist.unsqueeze(2)  # [a, p, n] = d(a,n) - d(a,p)
    return positive.unsqueeze(2) & negative.unsqueeze(1) & (gap > 0) & (gap <= margin)


def _tuple_logits(dist: torch.Tensor, valid: torch.Tensor, tau: float) -> torch.Tensor:
    """(B, B, 1+B) logits [-d(a,p), -d(a,n)...] / tau, invalid negatives masked out."""
    b = dist.shape[0]
    positive = -dist.unsqueeze(2) / tau  # [a, p, 1]
    negatives = (-dist / tau).unsqueeze(1).expand(b, b, b).masked_fill(~valid, MASKED)  # [a, p, n]
    return torch.cat([positive, negatives], dim=2)


def refilled_stage1_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, labels: torch.Tensor,
                         tau: float = 4.0, margin: float = 0.2, form: str = "tuple",
                         truncate: bool = False) -> torch.Tensor:
    """Unweighted mean KL(q^T || q^S) over the mined (a, p) tuples (padding masked), or over the triplets
    for `form="triplet"` (Bernoulli KL of sigmoid((d_an - d_ap) / tau)). Nothing mined: a zero that is
    still attached to the student's graph. `truncate` keeps the same number of negatives (the fewest any
    tuple has) in every tuple, as the TPAMI code does."""
    d_s = pairwise_distances(student_emb)
    with torch.no_grad():
        d_t = pairwise_distances(teacher_emb)
        valid = semi_hard_mask(d_s.detach(), labels, margin)
    attached_zero = d_s.sum() * 0.0
    if form == "triplet":
        gap_s = (d_s.unsqueeze(1) - d_s.unsqueeze(2)) / tau
        gap_t = (d_t.unsqueeze(1) - d_t.unsqueeze(2)) / tau
        p_t = torch.sigmoid(gap_t)
        # KL of Bernoulli(p_t) from Bernoulli(p_s), with log-sigmoids for stability
        kl = p_t * (F.logsigmoid(gap_t) - F.logsigmoid(gap_s)) + (1 - p_t) * (F.logsigmoid(-gap_t) - F.logsigmoid(-gap_s))
        count = valid.sum()
        return attached_zero + (kl * valid).sum() / count.clamp_min(1)
    if form != "tuple":
        raise ValueError(f"form must be tuple or triplet, got {form!r}")
    counts = valid.sum(2)  # negatives per (a, p)
    has_tuple = counts > 0
    if truncate:
        fewest = torch.where(has_tuple, counts, counts.new_full((), valid.shape[2])).min()
        valid = valid & (valid.long().cumsum(2) <= fewest)
    log_q_s = F.log_softmax(_tuple_logits(d_s, valid, tau), dim=2)
    log_q_t = F.log_softmax(_tuple_logits(d_t, valid, tau), dim=2)
    kl = (log_q_t.exp() * (log_q_t - log_q_s)).sum(2)
    tuples = has_tuple.sum()
    return attached_zero + (kl * has_tuple).sum() / tuples.clamp_min(1)


def refilled_stage2_loss(student_logits: torch.Tensor, teacher_emb: torch.Tensor, centers: torch.Tensor,
                         labels: torch.Tensor, tau_t: float = 2.0, tau_s: float = 2.0,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """Unweighted batch mean of w_i * KL(p^T_i || p^S_i) over the classes present in `labels`.

    p^T_i = softmax(<f_t(x_i), c_k> / tau_t) and p^S_i = softmax(z_s,i[k] / tau_s), k over the batch's classes;
    `centers` is (num_student_classes, d_t), already normalised. Classes absent from the batch are masked
    (no host sync to find them)."""
    num_classes = centers.shape[0]
    present = torch.zeros(num_classes, dtype=torch.bool, device=labels.device)
    present[labels] = True
    scores = teacher_emb.float() @ centers.float().T
    log_p_t = F.log_softmax((scores / tau_t).masked_fill(~present, MASKED), dim=1)
    log_p_s = F.log_softmax((student_logits.float() / tau_s).masked_fill(~present, MASKED), dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)
    if weights is not None:
        kl = kl * weights
    return kl.mean()


def confidence_weights(teacher_logits: torch.Tensor) -> torch.Tensor:
    """The TPAMI weighting: e_i = -log max softmax(teacher logits), min-max normalised in the batch,
    w_i = 2 * sigmoid(-e~_i) (confident samples weigh up to 1, uncertain ones less)."""
    entropy = -F.log_softmax(teacher_logits.float(), dim=1).max(dim=1).values
    spread = (entropy.max() - entropy.min()).clamp_min(1e-12)
    return 2 * torch.sigmoid(-(entropy - entropy.min()) / spread)
