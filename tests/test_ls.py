"""Label smoothing: CE against the smoothed target."""

import math

import torch

from kdforge.data.inmemory import Batch
from kdforge.methods import MethodContext, StepState, build_method
from kdforge.models import ModelOutput, create_model


def test_label_smoothing_is_ce_against_the_smoothed_target():
    logits, target, eps = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]), torch.tensor([0, 1]), 0.2
    expected = 0.0
    for row, t in zip(logits.tolist(), target.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        q = [(1 - eps) * (k == t) + eps / len(row) for k in range(len(row))]
        expected += -sum(qk * (v - log_z) for qk, v in zip(q, row)) / len(target)
    ls = build_method("ls", {"smoothing": eps}, MethodContext(num_classes=3, student=create_model("mlp8", 3),
                                                                  teacher=None))
    terms = ls(Batch(torch.arange(2), torch.zeros(2), target), ModelOutput(logits, {}), None, StepState(0, 0, 0.0))
    assert abs(terms["ce"].item() - expected) < 1e-6
