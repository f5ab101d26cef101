"""SP: golden value."""

import numpy as np
import pytest
import torch

from kdforge.losses import sp_loss

RNG = np.random.RandomState(0)


def _unit_rows(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def test_sp_golden_value():
    fs, ft = RNG.randn(5, 3, 2, 2), RNG.randn(5, 7, 4, 4)
    gs, gt = fs.reshape(5, -1) @ fs.reshape(5, -1).T, ft.reshape(5, -1) @ ft.reshape(5, -1).T
    expected = np.sum((_unit_rows(gt, 1) - _unit_rows(gs, 1)) ** 2) / 25
    assert sp_loss(torch.tensor(fs), torch.tensor(ft)).item() == pytest.approx(expected, rel=1e-5)
