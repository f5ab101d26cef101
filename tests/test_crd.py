"""CRD: its memory bank, NCE, the other-class sampler and the negatives it draws."""

import numpy as np
import pytest
import torch

from kdforge.data.inmemory import Batch
from kdforge.errors import ConfigError
from kdforge.methods import MethodContext, StepState, build_method
from kdforge.models import create_model


def _context(student, teacher, n=50):
    labels = torch.arange(n) % 10
    return MethodContext(num_classes=10, student=student, teacher=teacher, dataset_size=n, train_labels=labels)


def _outputs(model, taps_needed, x):
    from kdforge.models import TappedModel

    return TappedModel(model, taps_needed)(x)


def _check_other_class(labels, index, negatives):
    assert negatives.shape == (len(index), negatives.shape[1])
    assert (labels[negatives] != labels[index][:, None]).all()  # never a classmate, never the anchor itself
    assert ((negatives >= 0) & (negatives < len(labels))).all()


@pytest.mark.parametrize("bank", ["memory", "queue"])
def test_crd_two_steps_update_its_memory_and_train_the_heads(bank):
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 10), create_model("resnet14", 10).eval()
    method = build_method("crd", {"negatives": 32, "bank": bank}, _context(student, teacher))
    memory = method.bank_s if bank == "memory" else method.queue_s
    before = memory.vectors.clone()
    opt = torch.optim.SGD(list(student.parameters()) + list(method.parameters()), lr=0.1)
    for step in range(2):
        index = torch.arange(step * 8, step * 8 + 8)
        x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
        with torch.no_grad():
            t_out = _outputs(teacher, ("embedding",), x)
        terms = method(Batch(index, x, y), _outputs(student, ("embedding",), x), t_out, StepState(0, step, 0.0))
        assert set(terms) == {"ce", "crd"} and torch.isfinite(terms["crd"])
        head_before = method.embed_s[0].weight.clone()
        opt.zero_grad()
        sum(terms.values()).backward()  # the dense path scored against the bank itself: no in-place write yet
        opt.step()
        method.after_step()  # the trainer's call: the memory takes this step's vectors
        assert not torch.equal(head_before, method.embed_s[0].weight)
    changed = (memory.vectors - before).abs().sum(1) > 0
    if bank == "memory":
        assert changed[:16].all() and not changed[16:].any()  # exactly the visited indices
        assert torch.allclose(memory.vectors[:16].norm(dim=1), torch.ones(16), atol=1e-5)
        assert method.z_set.item() and torch.isfinite(method.log_z_s) and torch.isfinite(method.log_z_t)
    else:
        assert changed.sum() == 16 and method.queue_s.head.item() == 16


def test_bank_scores_dense_and_sampled_paths_agree():
    from kdforge.memory import MomentumBank

    bank = MomentumBank(50, 8, generator=torch.Generator().manual_seed(0))
    queries = torch.randn(4, 8, requires_grad=True)
    few = torch.randint(0, 50, (4, 5))  # 50 > 4 * 5: gathers the sampled rows
    many = torch.cat([few, torch.randint(0, 50, (4, 10))], 1)  # 50 <= 4 * 15: one dense matmul
    expected = torch.einsum("bd,bkd->bk", queries, bank.vectors[many])
    assert torch.allclose(bank.scores(queries, few), expected[:, :5], atol=1e-6)
    assert torch.allclose(bank.scores(queries, many), expected, atol=1e-6)


def test_nce_loss_matches_the_probability_form():
    from kdforge.losses import nce_loss

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 9, generator=g) * 3
    n, log_z = 100, torch.tensor(2.5)
    p = np.exp(logits.double().numpy() - 2.5)  # P = exp(logit) / Z
    noise = 8 / n
    expected = -(np.log(p[:, 0] / (p[:, 0] + noise)).sum() + np.log(noise / (p[:, 1:] + noise)).sum()) / 4
    assert nce_loss(logits, log_z, n).item() == pytest.approx(expected, rel=1e-5)


def test_other_class_sampler_draws_distinct_other_class_indices_uniformly(device):
    from kdforge.memory import OtherClassSampler

    torch.manual_seed(0)
    labels = torch.randperm(60, device=device) % 4  # balanced: 15 per class, a pool of 45 other-class indices each
    sampler = OtherClassSampler(labels)
    index = torch.arange(60, device=device)
    hits = torch.zeros(60, 60, device=device)
    for _ in range(300):
        negatives = sampler(index, 40)
        _check_other_class(labels, index, negatives)
        assert all(len(set(row.tolist())) == 40 for row in negatives)  # without replacement, as K <= pool
        hits.scatter_add_(1, negatives, torch.ones_like(negatives, dtype=hits.dtype))
    # every other-class index of an anchor is chosen with probability 40/45 per step
    allowed = labels[None, :] != labels[:, None]
    rate = hits[allowed] / 300
    assert rate.mean().item() == pytest.approx(40 / 45, abs=1e-6)
    assert rate.min().item() > 0.8 and rate.max().item() < 0.97


def test_other_class_sampler_on_unbalanced_classes_and_more_negatives_than_the_pool():
    from kdforge.memory import OtherClassSampler

    torch.manual_seed(1)
    labels = torch.tensor([0] * 20 + [1] * 5 + [2] * 3)
    sampler = OtherClassSampler(labels)
    index = torch.arange(28)
    for k in (4, 30):  # 30 > every pool: indices repeat, as the official code's replace=True
        negatives = sampler(index, k)
        _check_other_class(labels, index, negatives)
    counts = torch.bincount(labels[sampler(torch.zeros(2000, dtype=torch.long), 1).flatten()], minlength=3)
    assert counts[0] == 0 and counts[1].item() == pytest.approx(2000 * 5 / 8, rel=0.1)  # uniform over the pool


def test_crd_default_negatives_are_never_classmates():
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 10), create_model("resnet14", 10).eval()
    ctx = _context(student, teacher, n=200)
    method = build_method("crd", {"negatives": 64}, ctx)
    seen = []
    scores = method.bank_t.scores
    method.bank_t.scores = lambda q, idx: seen.append(idx) or scores(q, idx)
    index = torch.arange(16)
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        t_out = _outputs(teacher, ("embedding",), x)
    method(Batch(index, x, ctx.train_labels[index]), _outputs(student, ("embedding",), x), t_out, StepState(0, 0, 0.0))
    sampled = seen[0]
    assert torch.equal(sampled[:, 0], index)  # column 0: the positive
    _check_other_class(ctx.train_labels, index, sampled[:, 1:])


def test_crd_uniform_sampling_stays_available_and_other_class_needs_labels():
    student, teacher = create_model("resnet8", 10), create_model("resnet14", 10).eval()
    ctx = MethodContext(num_classes=10, student=student, teacher=teacher, dataset_size=50)
    assert build_method("crd", {"negatives": 8, "sampling": "uniform"}, ctx).sampler is None
    with pytest.raises(ConfigError, match="sampling=uniform"):
        build_method("crd", {"negatives": 8}, ctx)
