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


@pytest.mark.parametrize("shape", [(3, 9, 4), (3, 4, 9)])  # more rows than columns, and fewer
def test_truncated_svd_gradient_is_autograds_where_no_triplet_is_dropped(shape):
    from kdforge.methods.kdsvd import TruncatedSVD

    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(shape[0], shape[2], min(shape[1:]), dtype=torch.float64)
    _, v = TruncatedSVD.apply(x)
    (v * weights).sum().backward()
    ours, x.grad = x.grad.clone(), None
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # the reference: autograd's exact SVD gradient
    (vh.transpose(1, 2) * weights).sum().backward()
    assert torch.allclose(ours, x.grad, atol=1e-10)


def test_truncated_svd_gradient_stays_finite_where_singular_values_repeat():
    from kdforge.methods.kdsvd import TruncatedSVD

    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    x[:, :, 5:] = 0  # three dead channels: three zero singular values
    x.requires_grad_(True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    vh.transpose(1, 2)[..., :4].sum().backward()
    assert not torch.isfinite(x.grad).all()  # autograd's gradient: 1 / (0 - 0) couplings
    x.grad = None
    _, v = TruncatedSVD.apply(x)
    v[..., :4].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
