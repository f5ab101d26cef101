"""AT: golden value."""

import numpy as np
import pytest
import torch

from kdforge.losses import at_loss


def test_at_loss_golden_value():
    fs = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]]]])  # B=1, C=1, 2x2
    ft = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])

    def attention(f):
        a = (f ** 2).mean(axis=1).reshape(1, -1)
        return a / np.linalg.norm(a)

    expected = ((attention(fs.numpy()) - attention(ft.numpy())) ** 2).mean()
    assert at_loss([fs], [ft]).item() == pytest.approx(expected, rel=1e-6)
