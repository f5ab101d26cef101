"""VID: golden value; its variance is trained."""

import math

import numpy as np
import pytest
import torch

from kdforge.losses import vid_loss
from kdforge.methods import MethodContext, build_method
from kdforge.models import create_model

RNG = np.random.RandomState(0)


def test_vid_golden_value_and_its_variance_is_trained():
    mu, t, log_scale = RNG.randn(2, 3, 4, 4), RNG.randn(2, 3, 4, 4), RNG.randn(3)
    var = np.log1p(np.exp(log_scale)) + 1e-5
    expected = np.mean(0.5 * ((mu - t) ** 2 / var[None, :, None, None] + np.log(var)[None, :, None, None]))
    got = vid_loss(torch.tensor(mu), torch.tensor(t), torch.tensor(log_scale))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    method = build_method("vid", {}, MethodContext(num_classes=10, student=create_model("resnet8", 10),
                                                   teacher=create_model("resnet14", 10)))
    names = {n for n, _ in method.named_parameters()}
    assert {"log_scales.0", "log_scales.1", "log_scales.2"} <= names  # trained with the regressors
    var0 = math.log1p(math.exp(method.log_scales[0][0].item())) + 1e-5
    assert var0 == pytest.approx(5.0, rel=1e-6)
