"""CKD, DKD and CRD: golden values against formulas written here, invariances, and CRD's memory."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdforge.data.inmemory import Batch
from kdforge.errors import ConfigError
from kdforge.losses import ckd_loss, dkd_loss
from kdforge.methods import METHODS, MethodContext, StepState, build_method
from kdforge.models import create_model


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference_ckd(student, teacher, tau, negatives="teacher-student"):
    s = np.asarray(student, np.float64)
    t = np.asarray(teacher, np.float64)
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    losses = []
    for i in range(len(s)):
        if negatives == "teacher-student":
            row = np.array([t[i] @ s[j] for j in range(len(s))])
        else:
            row = np.array([t[i] @ s[i] if j == i else s[i] @ s[j] for j in range(len(s))])
        row = row / tau
        losses.append(-row[i] + np.log(np.exp(row).sum()))
    return float(np.mean(losses))


def reference_dkd(student, teacher, target, alpha, beta, T):
    """The probability-space recipe: binary masses [p_target, 1 - p_target], then the renormalised
    distribution over the non-target classes; KL of each, times T^2, averaged over the batch."""
    s, t = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    total = 0.0
    for i, y in enumerate(target):
        ps, pt = np_softmax(s[i] / T), np_softmax(t[i] / T)
        bs, bt = np.array([ps[y], 1 - ps[y]]), np.array([pt[y], 1 - pt[y]])
        tckd = np.sum(bt * np.log(bt / bs))
        mask = np.arange(len(ps)) != y
        qs, qt = ps[mask] / ps[mask].sum(), pt[mask] / pt[mask].sum()
        nckd = np.sum(qt * np.log(qt / qs))
        total += alpha * tckd + beta * nckd
    return total / len(target) * T * T


def test_ckd_golden_values():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for tau in (1.0, 0.5, 2.0):
        assert ckd_loss(student, teacher, tau).item() == pytest.approx(reference_ckd(student, teacher, tau), rel=1e-5)
    assert ckd_loss(student, teacher, 1.0, negatives="student-student").item() == pytest.approx(
        reference_ckd(student, teacher, 1.0, "student-student"), rel=1e-5)
    sym = ckd_loss(student, teacher, 1.0, symmetric=True).item()
    assert sym == pytest.approx(0.5 * (reference_ckd(student, teacher, 1.0) + reference_ckd(teacher, student, 1.0)),
                                rel=1e-5)


def test_ckd_hand_computed_case():
    # Two orthogonal samples, student equal to teacher: S = I, loss = -1 + log(e + 1) at tau = 1.
    eye = torch.eye(2)
    assert ckd_loss(eye, eye, 1.0).item() == pytest.approx(-1 + math.log(math.e + 1), rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 8), st.integers(2, 7), st.integers(0, 10_000), st.floats(0.01, 100.0), st.floats(0.01, 100.0))
def test_ckd_is_invariant_to_batch_permutation_and_positive_rescaling(batch, classes, seed, a, b):
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    base = ckd_loss(student, teacher)
    perm = torch.randperm(batch, generator=g)
    assert torch.allclose(ckd_loss(student[perm], teacher[perm]), base, atol=1e-5)
    assert torch.allclose(ckd_loss(student * a, teacher * b), base, atol=1e-4)


def test_dkd_golden_values():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(5, 6, generator=g) * 3, torch.randn(5, 6, generator=g) * 3
    target = torch.tensor([0, 5, 2, 2, 3])
    for alpha, beta, T in ((1.0, 8.0, 4.0), (0.5, 2.0, 1.0)):
        got = dkd_loss(student, teacher, target, alpha, beta, T).item()
        assert got == pytest.approx(reference_dkd(student, teacher, target.tolist(), alpha, beta, T), rel=1e-5)


def test_dkd_with_beta_zero_is_the_binary_kl_of_target_mass():
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    target = torch.tensor([1, 9, 0, 4])
    T = 2.0
    ps, pt = torch.softmax(student / T, 1), torch.softmax(teacher / T, 1)
    a, b = ps.gather(1, target[:, None]).squeeze(1).double(), pt.gather(1, target[:, None]).squeeze(1).double()
    binary_kl = b * torch.log(b / a) + (1 - b) * torch.log((1 - b) / (1 - a))
    expected = (binary_kl.mean() * T * T).item()
    assert dkd_loss(student, teacher, target, 1.0, 0.0, T).item() == pytest.approx(expected, rel=1e-5)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 8), st.integers(3, 7), st.integers(0, 10_000))
def test_dkd_is_invariant_to_batch_permutation(batch, classes, seed):
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(batch, classes, generator=g), torch.randn(batch, classes, generator=g)
    target = torch.randint(0, classes, (batch,), generator=g)
    perm = torch.randperm(batch, generator=g)
    assert torch.allclose(dkd_loss(student, teacher, target), dkd_loss(student[perm], teacher[perm], target[perm]),
                          atol=1e-5)


def test_dkd_and_ckd_stay_finite_in_bf16_with_confident_logits():
    target = torch.tensor([0, 1, 2, 3])
    student = torch.full((4, 10), -200.0)
    student[torch.arange(4), target] = 200.0  # p_target == 1 exactly in float32: log(1 - p) would be -inf
    teacher = torch.randn(4, 10) * 50
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = student.bfloat16().requires_grad_()
        value = dkd_loss(s, teacher.bfloat16(), target)
        value.backward()
        c = ckd_loss(student.bfloat16(), teacher.bfloat16())
    assert torch.isfinite(value) and torch.isfinite(s.grad).all() and torch.isfinite(c)


def _context(student, teacher, n=50):
    labels = torch.arange(n) % 10
    return MethodContext(num_classes=10, student=student, teacher=teacher, dataset_size=n, train_labels=labels)


def _outputs(model, taps_needed, x):
    from kdforge.models import TappedModel

    return TappedModel(model, taps_needed)(x)


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


def test_ckd_dkd_crd_are_registered_with_teachers():
    for name in ("ckd", "dkd", "crd"):
        assert name in METHODS and METHODS.get(name).needs_teacher


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


def _check_other_class(labels, index, negatives):
    assert negatives.shape == (len(index), negatives.shape[1])
    assert (labels[negatives] != labels[index][:, None]).all()  # never a classmate, never the anchor itself
    assert ((negatives >= 0) & (negatives < len(labels))).all()


def test_other_class_sampler_draws_distinct_other_class_indices_uniformly():
    from kdforge.memory import OtherClassSampler

    torch.manual_seed(0)
    labels = torch.randperm(60) % 4  # balanced: 15 per class, a pool of 45 other-class indices each
    sampler = OtherClassSampler(labels)
    index = torch.arange(60)
    hits = torch.zeros(60, 60)
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
