"""KD: golden values and invariances of kd_loss."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdforge.losses import kd_loss


def reference_kd(student, teacher, temperature):
    """T^2 * mean_i sum_c p_t log(p_t / p_s), in float64 numpy, written independently."""
    s = np.asarray(student, dtype=np.float64) / temperature
    t = np.asarray(teacher, dtype=np.float64) / temperature
    ps = np.exp(s - s.max(1, keepdims=True))
    ps /= ps.sum(1, keepdims=True)
    pt = np.exp(t - t.max(1, keepdims=True))
    pt /= pt.sum(1, keepdims=True)
    return temperature ** 2 * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))


def test_kd_loss_golden_value():
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    for temperature in (1.0, 4.0):
        got = kd_loss(student, teacher, temperature).item()
        assert math.isclose(got, reference_kd(student, teacher, temperature), rel_tol=1e-5)


def test_kd_loss_hand_computed_two_class_case():
    # teacher (0.5, 0.5), student softmax(0, log 3) = (0.25, 0.75) at T=1:
    # KL = 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75)
    got = kd_loss(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 0.0]]), 1.0).item()
    assert math.isclose(got, 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0), rel_tol=1e-6)


def test_kd_loss_zero_when_student_equals_teacher_and_has_gradient_otherwise():
    logits = torch.randn(5, 7)
    assert kd_loss(logits, logits.clone(), 4.0).abs().item() < 1e-6
    student = torch.randn(5, 7, requires_grad=True)
    kd_loss(student, logits, 4.0).backward()
    assert student.grad.abs().sum() > 0


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 9), st.integers(2, 6), st.floats(0.5, 8.0), st.integers(0, 10_000))
def test_kd_loss_is_invariant_to_batch_permutation(batch, classes, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    perm = torch.randperm(batch, generator=g)
    a = kd_loss(student, teacher, temperature)
    b = kd_loss(student[perm], teacher[perm], temperature)
    assert torch.allclose(a, b, atol=1e-6)
    # kd_loss works in float32 (by design, for bf16 autocast): each log-probability carries ~1e-7 of rounding, the
    # KL of two close distributions cancels to a small number that keeps it, and T^2 scales it; the float64
    # reference differs by that much, not by a relative amount (batch 2, 2 classes, T 6.25: 1.1e-6 on 7.8e-3)
    assert math.isclose(a.item(), reference_kd(student, teacher, temperature), rel_tol=1e-4,
                        abs_tol=1e-6 * temperature ** 2)


def test_kd_loss_stays_finite_under_bf16_autocast_with_extreme_logits():
    student = torch.randn(4, 10) * 300
    teacher = torch.randn(4, 10) * 300
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = kd_loss(student.bfloat16(), teacher.bfloat16(), 4.0)
    assert torch.isfinite(value)
    assert value.dtype == torch.float32
