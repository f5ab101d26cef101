"""DKD: golden values against the probability-space recipe written here, invariances, bf16 stability (CKD too)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdforge.losses import ckd_loss, dkd_loss


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference_dkd(student, teacher, target, alpha, beta, T):
    """The probability-space recipe: binary masses [p_target, 1 - p_target], then the renormalised
    distribution over the non-target classes; KL of each, times T^2, averaged over the batch."""
    s, t = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    total = 0.0
    for i, y in enumerate(target):
        ps, pt = np_softmax(s[i] / T), np_softmax(t[i] / T)
        bs, bt = np.array([ps[y], 1 - ps[y]]), np.array([pt[y], 1 - pt[y]])
        tckd = np.sum(bt * np.log(bt / bs))
        mask = np.arange(len(ps)) != y
        qs, qt = ps[mask] / ps[mask].sum(), pt[mask] / pt[mask].sum()
        nckd = np.sum(qt * np.log(qt / qs))
        total += alpha * tckd + beta * nckd
    return total / len(target) * T * T


def test_dkd_golden_values():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(5, 6, generator=g) * 3, torch.randn(5, 6, generator=g) * 3
    target = torch.tensor([0, 5, 2, 2, 3])
    for alpha, beta, T in ((1.0, 8.0, 4.0), (0.5, 2.0, 1.0)):
        got = dkd_loss(student, teacher, target, alpha, beta, T).item()
        assert got == pytest.approx(reference_dkd(student, teacher, target.tolist(), alpha, beta, T), rel=1e-5)


def test_dkd_with_beta_zero_is_the_binary_kl_of_target_mass():
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    target = torch.tensor([1, 9, 0, 4])
    T = 2.0
    ps, pt = torch.softmax(student / T, 1), torch.softmax(teacher / T, 1)
    a, b = ps.gather(1, target[:, None]).squeeze(1).double(), pt.gather(1, target[:, None]).squeeze(1).double()
    binary_kl = b * torch.log(b / a) + (1 - b) * torch.log((1 - b) / (1 - a))
    expected = (binary_kl.mean() * T * T).item()
    assert dkd_loss(student, teacher, target, 1.0, 0.0, T).item() == pytest.approx(expected, rel=1e-5)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 8), st.integers(3, 7), st.integers(0, 10_000))
def test_dkd_is_invariant_to_batch_permutation(batch, classes, seed):
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    target = torch.randint(0, classes, (batch,), generator=g)
    perm = torch.randperm(batch, generator=g)
    assert torch.allclose(dkd_loss(student, teacher, target), dkd_loss(student[perm], teacher[perm], target[perm]),
                          atol=1e-5)


def test_dkd_and_ckd_stay_finite_in_bf16_with_confident_logits():
    target = torch.tensor([0, 1, 2, 3])
    student = torch.full((4, 10), -200.0)
    student[torch.arange(4), target] = 200.0  # p_target == 1 exactly in float32: log(1 - p) would be -inf
    teacher = torch.randn(4, 10) * 50
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = student.bfloat16().requires_grad_()
        value = dkd_loss(s, teacher.bfloat16(), target)
        value.backward()
        c = ckd_loss(student.bfloat16(), teacher.bfloat16())
    assert torch.isfinite(value) and torch.isfinite(s.grad).all() and torch.isfinite(c)
