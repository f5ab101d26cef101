"""IC-KD: PICD / NICD golden values, exact retrieval, the neighbour table and its cache, the three paradigms,
and the dml / tfkd / ls baselines."""

import math

import numpy as np
import pytest
import torch

from kdforge.config import load_config
from kdforge.engine.checkpoint import read_checkpoint
from kdforge.engine.pipeline import train
from kdforge.losses import aggregate_logits, nicd_loss, picd_loss
from kdforge.memory.incontext import InContextBank, neighbour_table, retrieve
from kdforge.methods.ickd import nicd_margin_rows
from kdforge.methods.tfkd import virtual_teacher


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_picd_golden_value():
    rng = np.random.default_rng(0)
    zs, zbar = rng.normal(size=(5, 7)) * 3, rng.normal(size=(5, 7)) * 3
    tau = 4.0
    pt, ps = softmax(zbar / tau), softmax(zs / tau)
    expected = tau**2 * np.mean(np.sum(pt * np.log(pt / ps), axis=1))
    got = picd_loss(torch.tensor(zs), torch.tensor(zbar), tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_nicd_golden_value():
    rng = np.random.default_rng(1)
    zs, pos, neg = rng.normal(size=(4, 6)), rng.normal(size=(4, 6)), rng.normal(size=(4, 3, 6))
    rho = 0.1

    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    losses = []
    for i in range(4):
        top = math.exp(cos(zs[i], pos[i]) / rho)
        bottom = top + sum(math.exp(cos(zs[i], neg[i, k]) / rho) for k in range(3))
        losses.append(-math.log(top / bottom))
    got = nicd_loss(torch.tensor(zs), torch.tensor(pos), torch.tensor(neg), rho)
    assert got.item() == pytest.approx(np.mean(losses), rel=1e-5)


def test_nicd_margin_form_golden_value():
    rng = np.random.default_rng(2)
    zs, neg = rng.normal(size=(3, 5)) * 4, rng.normal(size=(3, 2, 5)) * 4
    tau, m = 4.0, 0.05
    ps = softmax(zs / tau)
    expected = []
    for i in range(3):
        hinges = []
        for k in range(2):
            pn = softmax(neg[i, k] / tau)
            hinges.append(max(0.0, m - np.sum(pn * np.log(pn / ps[i]))))
        expected.append(np.mean(hinges))
    got = nicd_margin_rows(torch.tensor(zs), torch.tensor(neg), tau, m)
    assert got.numpy() == pytest.approx(np.array(expected), rel=1e-5, abs=1e-7)


def test_aggregation_weighted_uniform_and_inadmissible_slots():
    logits = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    sims = torch.tensor([[0.9, 0.5, float("-inf")]])
    w = np.exp(np.array([0.9, 0.5]) / 0.1)
    w /= w.sum()
    weighted = aggregate_logits(logits, sims, 0.1)
    assert weighted[0].numpy() == pytest.approx(w[0] * np.array([1, 0]) + w[1] * np.array([0, 1]), rel=1e-6)
    assert aggregate_logits(logits, sims, None)[0].tolist() == pytest.approx([0.5, 0.5])
    nothing = aggregate_logits(logits, torch.full((1, 3), float("-inf")), 0.1)
    assert torch.equal(nothing, torch.zeros(1, 2))


def brute_force(q, ql, keys, kl, k_pos, k_neg, exclude):
    sims = q @ keys.T
    out = []
    for i in range(len(q)):
        order = sorted(range(len(keys)), key=lambda n: -sims[i, n])
        allowed = [n for n in order if n != exclude[i]]
        out.append(([n for n in allowed if kl[n] == ql[i]][:k_pos], [n for n in allowed if kl[n] != ql[i]][:k_neg]))
    return out


@pytest.mark.parametrize("block", [1 << 24, 40])  # one chunk, and many tiny chunks
def test_retrieval_is_the_exact_top_k_and_never_the_query(block):
    gen = torch.Generator().manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(60, 8, generator=gen, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 4, (60,), generator=gen)
    queries, own = keys[:25], torch.arange(25)
    nb = retrieve(queries, labels[:25], keys, labels, 3, 5, exclude=own, block_elements=block)
    expected = brute_force(queries.numpy(), labels[:25].numpy(), keys.numpy(), labels.numpy(), 3, 5, own.numpy())
    for i, (pos, neg) in enumerate(expected):
        assert nb.pos_index[i].tolist() == pos and nb.neg_index[i].tolist() == neg
        assert i not in nb.pos_index[i].tolist()
    assert torch.isfinite(nb.pos_sim).all() and torch.isfinite(nb.neg_sim).all()


def test_retrieval_marks_missing_neighbours_and_skips_unfilled_entries():
    keys = torch.eye(4)
    labels = torch.tensor([0, 0, 1, 1])
    valid = torch.tensor([True, True, True, False])
    nb = retrieve(keys[:1], labels[:1], keys, labels, 3, 3, exclude=torch.tensor([0]), valid=valid)
    assert nb.pos_index[0, 0].item() == 1 and torch.isinf(nb.pos_sim[0, 1:]).all()
    assert nb.neg_index[0, 0].item() == 2 and torch.isinf(nb.neg_sim[0, 1:]).all()  # entry 3 is not filled


def test_neighbour_table_equals_on_the_fly_retrieval_for_clean_queries():
    gen = torch.Generator().manual_seed(3)
    emb = torch.nn.functional.normalize(torch.randn(200, 16, generator=gen), dim=1)
    labels = torch.randint(0, 5, (200,), generator=gen)
    table = neighbour_table(emb, labels, 4, 6)
    direct = retrieve(emb, labels, emb, labels, 4, 6, exclude=torch.arange(200))
    for got, want in zip(table, direct):
        assert torch.equal(got, want) if got.dtype == torch.long else torch.allclose(got, want)


def test_bank_write_normalises_and_marks_entries():
    bank = InContextBank(6, 3, 2)
    bank.write(torch.tensor([4, 1]), torch.tensor([[3.0, 0, 4], [0, 2, 0]]), torch.randn(2, 2), torch.tensor([1, 0]))
    assert bank.filled.tolist() == [False, True, False, False, True, False]
    assert bank.embeddings[4].tolist() == pytest.approx([0.6, 0, 0.8])
    assert bank.labels[[1, 4]].tolist() == [0, 1]


def test_retrieval_bounded_memory_on_a_large_bank():
    # 1.28 M entries: chunked search of a few queries, memory bounded by the block size, not N x N
    n = 1_280_000
    gen = torch.Generator().manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(n, 16, generator=gen), dim=1)
    labels = torch.randint(0, 1000, (n,), generator=gen)
    queries = keys[:3]
    nb = retrieve(queries, labels[:3], keys, labels, 2, 2, exclude=torch.arange(3), block_elements=1 << 21)
    sims = queries @ keys.T
    for i in range(3):
        same = (labels == labels[i]).clone()
        same[i] = False
        best_same = sims[i].masked_fill(~same, -2).topk(2).indices
        assert nb.pos_index[i].tolist() == best_same.tolist()


def virtual_reference(target, k, a, t):
    u = np.full(k, (1 - a) / (k - 1))
    u[target] = a
    return np.log(softmax(u / t))


def test_tfkd_virtual_teacher():
    got = virtual_teacher(torch.tensor([2, 0]), 4, 0.9, 20.0)
    assert got[0].numpy() == pytest.approx(virtual_reference(2, 4, 0.9, 20.0), rel=1e-5)
    assert got[1].numpy() == pytest.approx(virtual_reference(0, 4, 0.9, 20.0), rel=1e-5)


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ickd") / "teacher"
    train(load_config("digits-teacher", [f"out={folder}", "epochs=3", "threads=1", "progress=false"]), echo=lambda m: None)
    return folder


FAST = ["epochs=2", "threads=1", "progress=false", "tensorboard=false"]


@pytest.mark.parametrize("args", [
    ["method=ickd"],
    ["method=ickd", "method_args.query=augmented", "method_args.nicd_form=margin"],
    ["method=ickd_online", "method_args.warmup_epochs=1"],
    ["method=ickd_tf", "method_args.warmup_epochs=1", "method_args.ema=0.9"],
    ["method=dml"], ["method=tfkd"], ["method=ls"],
])
def test_paradigms_and_baselines_train_two_epochs_on_digits(tmp_path, digits_teacher, args):
    summary = train(load_config("digits-student", [f"out={tmp_path}", *FAST, *args,
                                                   f"teacher_checkpoint={digits_teacher}"]), echo=lambda m: None)
    assert summary["top1_last"] > 30  # ten classes: chance is 10 %
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    if args[0].startswith("method=ickd"):
        last_epoch = [line for line in lines if '"type": "epoch"' in line][-1]
        # all three paradigms default to NICD only (the paper regime's choices)
        assert '"loss/nicd"' in last_epoch and '"loss/nicd": 0.0,' not in last_epoch  # the term was active


def test_offline_neighbour_table_is_cached_and_reused(tmp_path, digits_teacher):
    logs = []
    for run in ("a", "b"):
        train(load_config("digits-student", [f"out={tmp_path / run}", *FAST, "epochs=1", "method=ickd", "method_args.k_pos=5",
                                             f"teacher_checkpoint={digits_teacher}"]), echo=logs.append)
    assert any("built in" in line for line in logs) and any("read from the cache" in line for line in logs)
    a = read_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the cached table gives the same training


def test_online_peers_are_checkpointed_and_teacher_free_needs_no_teacher(tmp_path):
    summary = train(load_config("digits-student", [f"out={tmp_path}", *FAST, "epochs=1", "method=ickd_online"]),
                    echo=lambda m: None)
    assert summary["teacher"] is None
    state = read_checkpoint(tmp_path / "checkpoint.pt")["method"]
    assert any(k.startswith("peers.models.0.") for k in state) and "banks.0.logits" in state
    assert state["banks.0.filled"].float().mean() > 0.9  # every index visited in the epoch (drop_last leaves a few)


def test_the_paradigms_are_registered_methods_and_the_old_argument_says_which():
    from kdforge.errors import ConfigError
    from kdforge.methods import METHODS

    assert [METHODS.get(m).Config().paradigm for m in ("ickd", "ickd_online", "ickd_tf")] == \
        ["offline", "online", "teacher-free"]
    assert METHODS.get("ickd").uses_teacher({}) and not METHODS.get("ickd_tf").uses_teacher({})
    with pytest.raises(ConfigError, match="method=ickd \\(offline\\), ickd_online or ickd_tf"):
        METHODS.get("ickd").uses_teacher({"paradigm": "online"})
