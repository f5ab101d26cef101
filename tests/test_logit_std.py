"""LogitStd: golden value and invariances; every logit method with it ignores the student's logit scale."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdforge.data.inmemory import Batch
from kdforge.losses import kd_loss, standardize_logits
from kdforge.methods import MethodContext, StepState, build_method
from kdforge.models.taps import ModelOutput


def test_standardize_logits_golden_value():
    z = np.random.RandomState(1).randn(4, 7) * 5 + 3
    expected = (z - z.mean(1, keepdims=True)) / (z.std(1, ddof=1, keepdims=True) + 1e-7)
    assert np.allclose(standardize_logits(torch.tensor(z)).numpy(), expected, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(3, 8), st.integers(0, 10_000), st.floats(0.1, 20.0), st.floats(-50.0, 50.0))
def test_logit_std_is_invariant_to_a_per_sample_shift_and_positive_scale(batch, classes, seed, scale, shift):
    g = torch.Generator().manual_seed(seed)
    # float64: a shift of 50 on logits 0.1 apart would eat float32's digits, which is rounding, not the method
    zs, zt = torch.randn(batch, classes, generator=g).double(), torch.randn(batch, classes, generator=g).double()
    per_row = scale * (1 + torch.rand(batch, 1, generator=g).double())
    moved = zs * per_row + shift
    assert torch.allclose(standardize_logits(moved), standardize_logits(zs), atol=1e-4)
    kd = kd_loss(standardize_logits(zs), standardize_logits(zt), 2.0)
    assert kd_loss(standardize_logits(moved), standardize_logits(zt), 2.0).item() == pytest.approx(kd.item(), abs=1e-4)


@pytest.mark.parametrize("method, args, term", [("kd", {}, "kd"), ("dkd", {"warmup_epochs": 0}, "dkd"),
                                                ("ckd", {}, "ckd"), ("dist", {}, "dist")])
def test_every_logit_method_with_logit_std_ignores_the_students_logit_scale(method, args, term):
    torch.manual_seed(0)
    ctx = MethodContext(num_classes=10, student=torch.nn.Identity(), teacher=torch.nn.Identity())
    plain = build_method(method, args, ctx)
    standardised = build_method(method, {**args, "logit_std": True}, ctx)
    zs, zt, y = torch.randn(8, 10), torch.randn(8, 10) * 4, torch.randint(0, 10, (8,))

    def value(m, student_logits):
        batch = Batch(torch.arange(8), torch.zeros(8, 1), y)
        return m(batch, ModelOutput(student_logits, {}), ModelOutput(zt, {}), StepState(0, 0, 0.0))[term].item()

    assert value(standardised, 3 * zs + 2) == pytest.approx(value(standardised, zs), rel=1e-4)
    assert value(plain, 3 * zs + 2) != pytest.approx(value(plain, zs), rel=1e-3)  # the switch is what does it
