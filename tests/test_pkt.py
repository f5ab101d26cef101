"""PKT: golden value."""

import numpy as np
import pytest
import torch

from kdforge.losses import pkt_loss

RNG = np.random.RandomState(0)


def _unit_rows(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def test_pkt_golden_value():
    es, et = RNG.randn(6, 4), RNG.randn(6, 9)

    def probabilities(e):
        c = (_unit_rows(e, 1) @ _unit_rows(e, 1).T + 1) / 2
        return c / c.sum(1, keepdims=True)

    ps, pt = probabilities(es), probabilities(et)
    expected = np.mean(pt * np.log((pt + 1e-7) / (ps + 1e-7)))
    assert pkt_loss(torch.tensor(es), torch.tensor(et)).item() == pytest.approx(expected, rel=1e-4)
