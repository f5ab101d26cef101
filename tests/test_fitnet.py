"""FitNet: the hint phase trains up to the hint layer only."""

import torch

from kdforge.data.inmemory import Batch
from kdforge.methods import MethodContext, StepState, build_method
from kdforge.models import TappedModel, create_model


def ctx(student, teacher, shape=(3, 32, 32)):
    return MethodContext(num_classes=10, student=student, teacher=teacher, input_shape=shape)


def _step(method, student, teacher, epoch=0):
    cls = type(method)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_out = TappedModel(teacher.eval(), cls.teacher_taps)(x)
    s_out = TappedModel(student, cls.student_taps)(x)
    return method(Batch(torch.arange(4), x, y), s_out, t_out, StepState(epoch, 0, float(epoch)))


def test_fitnet_hint_phase_trains_only_up_to_the_hint_layer():
    teacher, student = create_model("resnet20", 10), create_model("resnet8", 10)
    method = build_method("fitnet", {"hint_epochs": 2}, ctx(student, teacher))
    terms = _step(method, student, teacher, epoch=0)
    sum(terms.values()).backward()
    assert student.fc.weight.grad is None and student.layer3[0].conv1.weight.grad is None
    assert student.layer1[0].conv1.weight.grad is not None and student.layer2[0].conv1.weight.grad is not None
    later = _step(method, student, teacher, epoch=2)
    assert later["ce"].requires_grad
