"""Every feature baseline trains a zoo pair through hooks; FitNet and AT fit any pair without configuration and
refuse students without feature maps."""

import pytest
import torch
from method_steps import ctx, one_step

from kdforge.data.inmemory import Batch
from kdforge.errors import ConfigError
from kdforge.methods import METHODS, MethodContext, StepState, build_method
from kdforge.models import TappedModel, create_model


@pytest.mark.parametrize("name", ["nst", "sp", "pkt", "vid", "kdsvd"])
def test_each_baseline_trains_a_zoo_pair_through_hooks(name):
    torch.manual_seed(0)
    student, teacher = create_model("resnet8x4", 10), create_model("resnet32x4", 10).eval()
    method = build_method(name, {}, MethodContext(num_classes=10, student=student, teacher=teacher))
    cls = METHODS.get(name)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_out = TappedModel(teacher, cls.teacher_taps)(x)
    terms = method(Batch(torch.arange(4), x, y), TappedModel(student, cls.student_taps)(x), t_out,
                   StepState(0, 0, 0.0))
    assert set(terms) == {"ce", name} and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert student.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pair", [("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2"), ("vgg13", "MobileNetV2")])
@pytest.mark.parametrize("name", ["fitnet", "at"])
def test_feature_methods_fit_any_zoo_pair_without_configuration(pair, name):
    teacher, student = create_model(pair[0], 10), create_model(pair[1], 10)
    method = build_method(name, {}, ctx(student, teacher))
    terms = one_step(method, student, teacher)
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()


def test_feature_methods_refuse_students_without_feature_maps():
    with pytest.raises(ConfigError, match="convolutional stage features"):
        build_method("at", {}, ctx(create_model("mlp8", 10), create_model("cnn8", 10), (1, 8, 8)))
