"""One method step on random images, for the per-method tests: a MethodContext for a zoo pair, and the method's
terms for one batch with the teacher and student read through their taps."""

import torch

from kdforge.data.inmemory import Batch
from kdforge.methods import MethodContext, StepState
from kdforge.models import TappedModel


def ctx(student, teacher, shape=(3, 32, 32)):
    return MethodContext(num_classes=10, student=student, teacher=teacher, input_shape=shape)


def one_step(method, student, teacher, epoch=0):
    cls = type(method)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_out = TappedModel(teacher.eval(), cls.teacher_taps)(x)
    s_out = TappedModel(student, cls.student_taps)(x)
    return method(Batch(torch.arange(4), x, y), s_out, t_out, StepState(epoch, 0, float(epoch)))
