"""KDSVD: zero on the teacher's own features; one-line errors."""

import pytest
import torch

from kdforge.losses import kdsvd_loss
from kdforge.methods import MethodContext, build_method
from kdforge.models import create_model


def test_kdsvd_is_zero_for_the_teachers_own_features_and_positive_otherwise():
    torch.manual_seed(0)
    ft = [torch.randn(3, 8, 8, 8), torch.randn(3, 8, 4, 4), torch.randn(3, 8, 2, 2)]
    assert kdsvd_loss(ft, ft).item() == pytest.approx(0.0, abs=1e-6)
    fs = [f + torch.randn_like(f) for f in ft]
    assert kdsvd_loss(fs, ft).item() > 0


def test_kdsvd_refuses_stages_of_different_widths_on_one_line():
    from kdforge.errors import ConfigError

    with pytest.raises(ConfigError, match="same channel count"):
        build_method("kdsvd", {}, MethodContext(num_classes=10, student=create_model("resnet8", 10),
                                                teacher=create_model("resnet32x4", 10)))
