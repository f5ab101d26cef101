"""KR (kdforge's reconstruction): the filters aggregation, the sparse recoding penalty, the stats form, registration."""

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from method_steps import ctx

from kdforge.methods import METHODS, build_method
from kdforge.methods.kr import sparse_recode
from kdforge.models import create_model, declare


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


def test_registered():
    for name in ("kr", "kr_kd", "fitnet", "at"):
        assert name in METHODS
    kr_kd = build_method("kr_kd", {}, ctx(create_model("resnet8", 10), create_model("resnet20", 10)))
    assert (kr_kd.cfg.ce_weight, kr_kd.cfg.kd_weight) == (0.1, 0.9)


def test_sparse_recoding_passes_the_forward_and_keeps_the_largest_gradients():
    x = torch.tensor([1.0, -2.0, 3.0, 0.5, -0.1, 4.0, 0.0, 2.5], requires_grad=True)
    upstream = torch.tensor([0.3, -0.9, 0.1, 0.8, -0.05, 0.2, 0.6, -0.7])
    y = sparse_recode(x, rho=0.3)  # ceil(0.3 * 8) = 3 entries kept
    assert torch.equal(y.detach(), x.detach())
    y.backward(upstream)
    ranked = sorted(range(8), key=lambda i: -abs(upstream[i].item()))[:3]  # by gradient magnitude
    expected = [upstream[i].item() if i in ranked else 0.0 for i in range(8)]
    assert x.grad.tolist() == expected
    # with a score, the score ranks instead of the gradient
    x.grad = None
    score = torch.arange(8.0)
    sparse_recode(x, rho=0.25, score=score).backward(upstream)
    assert x.grad.tolist() == [0.0] * 6 + upstream[6:].tolist()
