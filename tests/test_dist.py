"""DIST: golden value and invariances against the formula written here; registration."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdforge.data.inmemory import Batch
from kdforge.losses import dist_loss
from kdforge.methods import METHODS, MethodContext, StepState, build_method
from kdforge.models.taps import ModelOutput


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_dist_golden_value():
    rng = np.random.RandomState(0)
    zs, zt = rng.randn(6, 5) * 2, rng.randn(6, 5) * 3
    tau, beta, gamma = 4.0, 2.0, 3.0
    ps, pt = _softmax(zs / tau), _softmax(zt / tau)
    inter = 1 - np.mean([np.corrcoef(ps[i], pt[i])[0, 1] for i in range(6)])
    intra = 1 - np.mean([np.corrcoef(ps[:, j], pt[:, j])[0, 1] for j in range(5)])
    expected = tau ** 2 * (beta * inter + gamma * intra)
    got = dist_loss(torch.tensor(zs), torch.tensor(zt), beta=beta, gamma=gamma, tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert dist_loss(torch.tensor(zt), torch.tensor(zt)).item() == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(3, 8), st.integers(0, 10_000), st.floats(-20.0, 20.0))
def test_dist_is_invariant_to_a_per_sample_logit_shift_and_to_the_batch_order(batch, classes, seed, shift):
    g = torch.Generator().manual_seed(seed)
    zs, zt = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    base = dist_loss(zs, zt, 2.0, 2.0, 4.0)
    shifted = zs + shift * torch.rand(batch, 1, generator=g)  # softmax does not see a per-row shift
    assert dist_loss(shifted, zt, 2.0, 2.0, 4.0).item() == pytest.approx(base.item(), abs=1e-4)
    perm = torch.randperm(batch, generator=g)
    assert dist_loss(zs[perm], zt[perm], 2.0, 2.0, 4.0).item() == pytest.approx(base.item(), abs=1e-4)


def test_dist_is_registered_and_trains_with_ce():
    assert "dist" in METHODS and METHODS.get("dist").needs_teacher
    ctx = MethodContext(num_classes=10, student=torch.nn.Identity(), teacher=torch.nn.Identity())
    method = build_method("dist", {}, ctx)
    zs = torch.randn(8, 10, requires_grad=True)
    terms = method(Batch(torch.arange(8), torch.zeros(8, 1), torch.randint(0, 10, (8,))),
                   ModelOutput(zs, {}), ModelOutput(torch.randn(8, 10), {}), StepState(0, 0, 0.0))
    assert set(terms) == {"ce", "dist"}
    sum(terms.values()).backward()
    assert torch.isfinite(zs.grad).all() and zs.grad.abs().sum() > 0
