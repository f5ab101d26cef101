"""NST: golden value."""

import numpy as np
import pytest
import torch

from kdforge.losses import nst_loss

RNG = np.random.RandomState(0)


def _unit_rows(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def test_nst_golden_value():
    fs, ft = RNG.randn(2, 3, 4, 4), RNG.randn(2, 5, 4, 4)
    s, t = _unit_rows(fs.reshape(2, 3, 16), 2), _unit_rows(ft.reshape(2, 5, 16), 2)

    def k(a, b):  # mean over samples and channel pairs of <a_i, b_j>^2
        return np.mean([(a[n] @ b[n].T) ** 2 for n in range(2)])

    expected = k(t, t) + k(s, s) - 2 * k(s, t)
    got = nst_loss([torch.tensor(fs)], [torch.tensor(ft)])
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert nst_loss([torch.tensor(ft)], [torch.tensor(ft)]).item() == pytest.approx(0.0, abs=1e-6)
