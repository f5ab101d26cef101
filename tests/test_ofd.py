"""OFD: the margin against a numerical integral, the partial L2 against its definition written here, where the
pre-ReLU features come from in each teacher family, and a training step."""

import numpy as np
import pytest
import torch

from kdforge.data.inmemory import Batch
from kdforge.errors import NotApplicableError
from kdforge.methods import MethodContext, StepState, build_method
from kdforge.methods.ofd import ofd_margin, ofd_partial_l2, pre_relu_points
from kdforge.models import TappedModel, create_model


def test_margin_is_the_mean_of_the_negative_tail():
    gamma, beta = torch.tensor([1.0, 0.5, 2.0, 0.1]), torch.tensor([0.0, 0.3, -1.0, 1.0])
    got = ofd_margin(gamma, beta)
    for g, b, m in zip(gamma.tolist(), beta.tolist(), got.tolist()):
        x = np.linspace(b - 12 * g, 0, 200001)
        density = np.exp(-((x - b) / g) ** 2 / 2)
        tail = np.trapezoid(density, x) / (g * np.sqrt(2 * np.pi))
        expected = np.trapezoid(x * density, x) / np.trapezoid(density, x) if tail > 0.001 else -3 * g
        assert m == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert got[0].item() == pytest.approx(-np.sqrt(2 / np.pi), rel=1e-6)
    assert got[3].item() == pytest.approx(-0.3)  # P(x < 0) under 0.1 %: -3 gamma


def test_partial_l2_golden_value():
    rng = np.random.RandomState(0)
    s, t, margin = rng.randn(3, 2, 4, 4), rng.randn(3, 2, 4, 4), np.array([-0.5, -0.2])
    m = margin[None, :, None, None]
    loss = ((s - m) ** 2 * ((s > m) & (t <= m)) + (s - t) ** 2 * ((s > t) & (t > m) & (t <= 0))
            + (s - t) ** 2 * (t > 0))
    expected = loss.mean(axis=0).sum()
    got = ofd_partial_l2(torch.tensor(s), torch.tensor(t), torch.tensor(margin))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_pre_relu_points_follow_each_teacher_family():
    assert [p[1] for p in pre_relu_points(create_model("resnet32x4", 10), (3, 32, 32))] == \
        ["layer1:preact", "layer2:preact", "layer3:preact"]
    # pre-activation WRN: the BatchNorm that reads each stage's sum, as the official code takes
    assert [p[1] for p in pre_relu_points(create_model("wrn_40_2", 10), (3, 32, 32))] == \
        ["block2.layer.0.bn1", "block3.layer.0.bn1", "bn1"]
    assert [p[1] for p in pre_relu_points(create_model("vgg13", 10), (3, 32, 32))][0] == "block1"
    with pytest.raises(NotApplicableError, match="BatchNorm before its ReLU"):
        build_method("ofd", {}, MethodContext(num_classes=10, student=create_model("resnet8", 10),
                                              teacher=create_model("MobileNetV2", 10)))


@pytest.mark.parametrize("student, teacher", [("resnet8x4", "resnet32x4"), ("wrn_16_2", "wrn_40_2")])
def test_ofd_trains_the_student_and_its_connectors(student, teacher):
    torch.manual_seed(0)
    s, t = create_model(student, 10), create_model(teacher, 10).eval()
    method = build_method("ofd", {}, MethodContext(num_classes=10, student=s, teacher=t))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_out = TappedModel(t, method.teacher_taps)(x)
    terms = method(Batch(torch.arange(4), x, y), TappedModel(s, method.student_taps)(x), t_out, StepState(0, 0, 0.0))
    assert set(terms) == {"ce", "ofd"} and torch.isfinite(terms["ofd"])
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in method.connectors.parameters())
    assert next(s.parameters()).grad.abs().sum() > 0
