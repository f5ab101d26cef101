"""KR (kdforge's reconstruction), FitNet and AT."""

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from kdforge.data.inmemory import Batch
from kdforge.errors import ConfigError
from kdforge.losses import at_loss
from kdforge.methods import METHODS, MethodContext, StepState, build_method
from kdforge.models import TappedModel, create_model, declare


class Block(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x):
        return self.conv1(x)


def toy(channels: int, blocks: int) -> nn.Module:
    model = nn.Module()
    model.s0 = nn.Sequential(*[Block(channels) for _ in range(blocks)])
    model.fc = nn.Linear(channels, 3)
    return declare(model, ("s0",), embedding="s0", classifier="fc")


def ctx(student, teacher, shape=(3, 32, 32)):
    return MethodContext(num_classes=10, student=student, teacher=teacher, input_shape=shape)


def test_filters_aggregation_of_a_hand_built_teacher():
    teacher, student = toy(4, 2), toy(2, 1)
    w1 = torch.arange(16, dtype=torch.float32).view(4, 4, 1, 1)
    with torch.no_grad():
        teacher.s0[0].conv1.weight.copy_(w1)
        teacher.s0[1].conv1.weight.copy_(3 * w1)
    method = build_method("kr", {}, ctx(student, teacher))
    assert method.form == "filters"
    # Reduce 4x4 channels to 2x2 by averaging contiguous 2x2 groups, then average the two blocks (1x and 3x).
    grouped = w1.view(4, 4).numpy().reshape(2, 2, 2, 2).mean(axis=(1, 3))
    expected = (grouped + 3 * grouped) / 2
    assert np.allclose(method.prior0.view(2, 2).numpy(), expected)
    assert expected[0, 0] == pytest.approx(2 * (0 + 1 + 4 + 5) / 4)


@pytest.mark.parametrize("rho", [0.1, 0.25, 1.0])
def test_penalty_alone_puts_prior_gradient_on_exactly_the_top_rho_entries(rho):
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 10), create_model("resnet20", 10)
    method = build_method("kr", {"rho": rho}, ctx(student, teacher))
    assert method.form == "filters" and len(method._convs) >= 6
    method.prior_term().backward()
    for conv in method._convs:
        carried = int((conv.weight.grad != 0).sum())
        assert carried == math.ceil(rho * conv.weight.numel())
    untouched = [p for p in student.parameters() if all(p is not c.weight for c in method._convs)]
    assert all(p.grad is None for p in untouched)  # the classifier, BN and unmatched convs: no prior gradient


def test_kept_entries_are_those_that_stray_most_from_the_prior():
    torch.manual_seed(1)
    student, teacher = create_model("resnet8", 10), create_model("resnet20", 10)
    method = build_method("kr", {"rho": 0.1}, ctx(student, teacher))
    method.prior_term().backward()
    conv = method._convs[0]
    deviation = (conv.weight - method.prior0).abs().flatten()
    kept = conv.weight.grad.flatten() != 0
    assert deviation[kept].min() >= deviation[~kept].max()


@pytest.mark.parametrize("pair", [("wrn_16_2", "wrn_16_1"), ("resnet32x4", "resnet8"), ("cnn8", "mlp8")])
def test_stats_form_is_width_agnostic(pair):
    teacher_name, student_name = pair
    extra = {"in_channels": 1} if teacher_name == "cnn8" else {}
    teacher = create_model(teacher_name, 10, **extra)
    student = create_model(student_name, 10, **extra)
    method = build_method("kr", {"form": "stats"}, ctx(student, teacher))
    value = method.prior_term()
    assert torch.isfinite(value) and value > 0
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_incompatible_pair_falls_back_to_stats_with_a_note(caplog):
    with caplog.at_level(logging.WARNING):
        method = build_method("kr", {}, ctx(create_model("MobileNetV2", 10), create_model("vgg13", 10)))
    assert method.form == "stats" and "using form=stats" in caplog.text
    assert torch.isfinite(method.prior_term())


def _step(method, student, teacher, epoch=0):
    cls = type(method)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_out = TappedModel(teacher.eval(), cls.teacher_taps)(x)
    s_out = TappedModel(student, cls.student_taps)(x)
    return method(Batch(torch.arange(4), x, y), s_out, t_out, StepState(epoch, 0, float(epoch)))


@pytest.mark.parametrize("pair", [("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2"), ("vgg13", "MobileNetV2")])
@pytest.mark.parametrize("name", ["fitnet", "at"])
def test_feature_methods_fit_any_zoo_pair_without_configuration(pair, name):
    teacher, student = create_model(pair[0], 10), create_model(pair[1], 10)
    method = build_method(name, {}, ctx(student, teacher))
    terms = _step(method, student, teacher)
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()


def test_fitnet_hint_phase_trains_only_up_to_the_hint_layer():
    teacher, student = create_model("resnet20", 10), create_model("resnet8", 10)
    method = build_method("fitnet", {"hint_epochs": 2}, ctx(student, teacher))
    terms = _step(method, student, teacher, epoch=0)
    sum(terms.values()).backward()
    assert student.fc.weight.grad is None and student.layer3[0].conv1.weight.grad is None
    assert student.layer1[0].conv1.weight.grad is not None and student.layer2[0].conv1.weight.grad is not None
    later = _step(method, student, teacher, epoch=2)
    assert later["ce"].requires_grad


def test_feature_methods_refuse_students_without_feature_maps():
    with pytest.raises(ConfigError, match="convolutional stage features"):
        build_method("at", {}, ctx(create_model("mlp8", 10), create_model("cnn8", 10), (1, 8, 8)))


def test_at_loss_golden_value():
    fs = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]]]])  # B=1, C=1, 2x2
    ft = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])

    def attention(f):
        a = (f ** 2).mean(axis=1).reshape(1, -1)
        return a / np.linalg.norm(a)

    expected = ((attention(fs.numpy()) - attention(ft.numpy())) ** 2).mean()
    assert at_loss([fs], [ft]).item() == pytest.approx(expected, rel=1e-6)


def test_registered():
    for name in ("kr", "kr_kd", "fitnet", "at"):
        assert name in METHODS
    kr_kd = build_method("kr_kd", {}, ctx(create_model("resnet8", 10), create_model("resnet20", 10)))
    assert (kr_kd.cfg.ce_weight, kr_kd.cfg.kd_weight) == (0.1, 0.9)
