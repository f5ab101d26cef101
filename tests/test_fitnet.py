"""FitNet: the hint phase trains up to the hint layer only."""


from method_steps import ctx, one_step

from kdforge.methods import build_method
from kdforge.models import create_model


def test_fitnet_hint_phase_trains_only_up_to_the_hint_layer():
    teacher, student = create_model("resnet20", 10), create_model("resnet8", 10)
    method = build_method("fitnet", {"hint_epochs": 2}, ctx(student, teacher))
    terms = one_step(method, student, teacher, epoch=0)
    sum(terms.values()).backward()
    assert student.fc.weight.grad is None and student.layer3[0].conv1.weight.grad is None
    assert student.layer1[0].conv1.weight.grad is not None and student.layer2[0].conv1.weight.grad is not None
    later = one_step(method, student, teacher, epoch=2)
    assert later["ce"].requires_grad
