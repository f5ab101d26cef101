"""Golden values for the losses that had none: label smoothing, the mutual (DML) loss, KR's sparse recoding; each
against the formula written out here with plain loops."""

import math

import torch

from kdforge.data.inmemory import Batch
from kdforge.methods import MethodContext, StepState, build_method
from kdforge.methods.kr import sparse_recode
from kdforge.methods.peers import mutual_loss
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


def test_mutual_loss_is_each_peers_mean_kl_to_the_others():
    torch.manual_seed(0)
    peers, T = [torch.randn(3, 4) for _ in range(3)], 2.0

    def softmax(row):
        z = [math.exp(v / T) for v in row]
        return [v / sum(z) for v in z]

    expected = 0.0
    for i, z_i in enumerate(peers):
        for j, z_j in enumerate(peers):
            if i == j:
                continue
            kl = 0.0
            for a, b in zip(z_j.tolist(), z_i.tolist()):  # KL(p_j || p_i), per sample, then the batch mean
                p, q = softmax(a), softmax(b)
                kl += sum(pk * math.log(pk / qk) for pk, qk in zip(p, q)) / len(z_i)
            expected += T * T * kl / (len(peers) - 1)
    assert abs(mutual_loss(peers, T).item() - expected) < 1e-5


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
