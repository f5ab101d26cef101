"""CKD: golden values against formulas written here, invariances, registration."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdforge.losses import ckd_loss
from kdforge.methods import METHODS


def reference_ckd(student, teacher, tau, negatives="teacher-student"):
    s = np.asarray(student, np.float64)
    t = np.asarray(teacher, np.float64)
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    losses = []
    for i in range(len(s)):
        if negatives == "teacher-student":
            row = np.array([t[i] @ s[j] for j in range(len(s))])
        else:
            row = np.array([t[i] @ s[i] if j == i else s[i] @ s[j] for j in range(len(s))])
        row = row / tau
        losses.append(-row[i] + np.log(np.exp(row).sum()))
    return float(np.mean(losses))


def test_ckd_golden_values():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for tau in (1.0, 0.5, 2.0):
        assert ckd_loss(student, teacher, tau).item() == pytest.approx(reference_ckd(student, teacher, tau), rel=1e-5)
    assert ckd_loss(student, teacher, 1.0, negatives="student-student").item() == pytest.approx(
        reference_ckd(student, teacher, 1.0, "student-student"), rel=1e-5)
    sym = ckd_loss(student, teacher, 1.0, symmetric=True).item()
    assert sym == pytest.approx(0.5 * (reference_ckd(student, teacher, 1.0) + reference_ckd(teacher, student, 1.0)),
                                rel=1e-5)


def test_ckd_hand_computed_case():
    # Two orthogonal samples, student equal to teacher: S = I, loss = -1 + log(e + 1) at tau = 1.
    eye = torch.eye(2)
    assert ckd_loss(eye, eye, 1.0).item() == pytest.approx(-1 + math.log(math.e + 1), rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 8), st.integers(2, 7), st.integers(0, 10_000), st.floats(0.01, 100.0), st.floats(0.01, 100.0))
def test_ckd_is_invariant_to_batch_permutation_and_positive_rescaling(batch, classes, seed, a, b):
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    base = ckd_loss(student, teacher)
    perm = torch.randperm(batch, generator=g)
    assert torch.allclose(ckd_loss(student[perm], teacher[perm]), base, atol=1e-5)
    assert torch.allclose(ckd_loss(student * a, teacher * b), base, atol=1e-4)


def test_ckd_dkd_crd_are_registered_with_teachers():
    for name in ("ckd", "dkd", "crd"):
        assert name in METHODS and METHODS.get(name).needs_teacher
