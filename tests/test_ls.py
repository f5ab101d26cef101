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


def test_tfkd_self_matches_the_official_loss_with_its_multiplier_over_the_classes():
    """Tf-KD_self as its authors' code computes it: (1 - a) CE + a * T^2 * (KL summed over classes and averaged over
    batch *and* classes) * multiplier; kdforge's self_weight is multiplier / K."""
    s = torch.tensor([[2.0, 0.5, -1.0, 0.3], [0.0, 1.0, 3.0, -2.0]])
    t = torch.tensor([[1.0, 0.0, 0.5, 0.2], [0.4, 2.0, 1.0, 0.0]])
    y, alpha, temp, multiplier, k = torch.tensor([0, 2]), 0.95, 6.0, 50.0, 4

    def log_softmax(row):
        log_z = math.log(sum(math.exp(v) for v in row))
        return [v - log_z for v in row]

    ce = sum(-log_softmax(r)[c] for r, c in zip(s.tolist(), y.tolist())) / 2
    kl_elements = []
    for rs, rt in zip(s.tolist(), t.tolist()):
        ls_, lt = log_softmax([v / temp for v in rs]), log_softmax([v / temp for v in rt])
        kl_elements += [math.exp(b) * (b - a) for a, b in zip(ls_, lt)]
    official = (1 - alpha) * ce + alpha * temp ** 2 * (sum(kl_elements) / len(kl_elements)) * multiplier
    args = {"mode": "self", "alpha": alpha, "temperature": temp, "self_weight": multiplier / k}
    tfkd = build_method("tfkd", args, MethodContext(num_classes=k, student=create_model("mlp8", k), teacher=None))
    terms = tfkd(Batch(torch.arange(2), torch.zeros(2), y), ModelOutput(s, {}), ModelOutput(t, {}), StepState(0, 0, 0.0))
    assert abs(sum(terms.values()).item() - official) < 1e-5
