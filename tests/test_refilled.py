"""REFILLED: mining, both stages' golden values, the GKD splits, the two-stage pipeline and its budgets."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from kdforge.config import load_config
from kdforge.data import gkd_split
from kdforge.engine.pipeline import train
from kdforge.errors import ConfigError, UserError
from kdforge.losses import refilled_stage1_loss, refilled_stage2_loss
from kdforge.methods.refilled import confidence_weights, pairwise_distances, semi_hard_mask


def np_dist(e):
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    return np.sqrt(np.maximum(((e[:, None] - e[None]) ** 2).sum(-1), 0))


def mined(d, y, margin):
    return {(a, p, n) for a, p, n in itertools.product(range(len(y)), repeat=3)
            if y[a] == y[p] and a != p and y[n] != y[a] and 0 < d[a, n] - d[a, p] <= margin}


def angles(*degrees):
    return np.array([[math.cos(math.radians(t)), math.sin(math.radians(t))] for t in degrees])


def reference_stage1(s_emb, t_emb, y, tau, margin):
    ds, dt = np_dist(s_emb), np_dist(t_emb)
    triplets = mined(ds, y, margin)
    tuples = {}
    for a, p, n in sorted(triplets):
        tuples.setdefault((a, p), []).append(n)
    kls = []
    for (a, p), negatives in tuples.items():
        def q(d):
            logits = np.array([-d[a, p]] + [-d[a, n] for n in negatives]) / tau
            e = np.exp(logits - logits.max())
            return e / e.sum()
        qt, qs = q(dt), q(ds)
        kls.append(np.sum(qt * np.log(qt / qs)))
    return float(np.mean(kls)) if kls else 0.0


def _digits_teacher_on(classes, folder):
    train(load_config("digits-teacher", [f"out={folder}", "epochs=4", f"data.classes={classes}", "threads=1",
                                         "tensorboard=false", "progress=false"]), echo=lambda m: None)
    return folder


def test_mining_returns_exactly_the_semi_hard_set():
    # Class 0 at 0 and 10 degrees; class 1 at 14, 40 and 180 degrees. Chord lengths decide semi-hardness.
    emb = angles(0, 10, 14, 40, 180)
    y = np.array([0, 0, 1, 1, 1])
    d = np_dist(emb)
    expected = mined(d, y, 0.2)
    got = semi_hard_mask(pairwise_distances(torch.tensor(emb)), torch.tensor(y), 0.2)
    assert {tuple(i) for i in got.nonzero().tolist()} == expected
    # chords 2 sin(delta/2): d(0,1) = 0.174, d(0,2) = 0.244 (gap 0.07: semi-hard), d(0,3) = 0.684 (gap 0.51: easy),
    # d(1,2) = 0.070 < d(1,0) (a hard negative)
    assert (0, 1, 2) in expected and (0, 1, 3) not in expected and (1, 0, 2) not in expected


def test_stage1_golden_value_and_widths_may_differ():
    rng = np.random.RandomState(0)
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    s_emb = rng.randn(8, 5) + y[:, None] * 0.3
    t_emb = rng.randn(8, 9)  # another width: only within-model distances are compared
    expected = reference_stage1(s_emb, t_emb, y, 4.0, 0.5)
    assert expected > 0
    got = refilled_stage1_loss(torch.tensor(s_emb), torch.tensor(t_emb), torch.tensor(y), tau=4.0, margin=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-4)


def test_stage1_triplet_form_golden_value():
    rng = np.random.RandomState(1)
    y = np.array([0, 0, 1, 1, 2, 2])
    s_emb, t_emb = rng.randn(6, 4), rng.randn(6, 4)
    ds, dt = np_dist(s_emb), np_dist(t_emb)
    ps, pt = [], []
    for a, p, n in mined(ds, y, 0.6):
        ps.append(1 / (1 + np.exp(-(ds[a, n] - ds[a, p]) / 4.0)))
        pt.append(1 / (1 + np.exp(-(dt[a, n] - dt[a, p]) / 4.0)))
    # the official reduction: [p; 1 - p] stacked as 2N rows of one column, KL summed and divided by the 2N rows
    student = np.concatenate([ps, 1 - np.array(ps)])
    teacher = np.concatenate([pt, 1 - np.array(pt)])
    expected = float(np.sum(teacher * (np.log(teacher) - np.log(student))) / len(teacher))
    got = refilled_stage1_loss(torch.tensor(s_emb), torch.tensor(t_emb), torch.tensor(y), margin=0.6, form="triplet")
    assert len(ps) > 3 and got.item() == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_stage1_truncation_keeps_the_fewest_negatives_in_every_tuple():
    rng = np.random.RandomState(2)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    s = torch.tensor(rng.randn(9, 3))
    full = refilled_stage1_loss(s, s * 2 + 0.1, y, margin=2.0)
    cut = refilled_stage1_loss(s, s * 2 + 0.1, y, margin=2.0, truncate=True)
    assert torch.isfinite(cut) and not torch.isclose(full, cut)


def test_nothing_mined_gives_a_zero_still_attached_to_the_graph():
    s = torch.randn(4, 3, requires_grad=True)
    loss = refilled_stage1_loss(s, torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))  # no positives at all
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert s.grad is not None and torch.all(s.grad == 0)


def test_stage2_golden_value_over_the_batch_classes():
    rng = np.random.RandomState(3)
    z_s, f_t = rng.randn(4, 6), rng.randn(4, 5)
    centers = rng.randn(6, 5)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    y = np.array([1, 4, 4, 0])
    w = np.array([1.0, 0.5, 2.0, 1.0])
    present = sorted(set(y))

    def softmax(v):
        e = np.exp(v - v.max())
        return e / e.sum()

    kls = []
    for i in range(4):
        pt = softmax(f_t[i] @ centers[present].T / 2.0)
        ps = softmax(z_s[i, present] / 1.0)
        kls.append(w[i] * np.sum(pt * np.log(pt / ps)))
    got = refilled_stage2_loss(torch.tensor(z_s), torch.tensor(f_t), torch.tensor(centers), torch.tensor(y),
                               tau_t=2.0, tau_s=1.0, weights=torch.tensor(w))
    assert got.item() == pytest.approx(float(np.mean(kls)), rel=1e-5)


def test_confidence_weights_favour_confident_teacher_predictions():
    logits = torch.tensor([[9.0, 0.0, 0.0], [1.0, 0.9, 0.8], [3.0, 0.0, 0.0]])
    w = confidence_weights(logits)
    assert w[0] == pytest.approx(1.0) and w[1] == pytest.approx(2 / (1 + math.e)) and w[1] < w[2] < w[0]


def test_gkd_split_follows_the_cifar_fs_order():
    val = [4, 7, 14, 15, 19, 26, 27, 32, 40, 47, 48, 55, 71, 73, 87, 89]
    test = [2, 5, 8, 21, 34, 42, 46, 58, 60, 62, 69, 70, 77, 83, 84, 86, 94, 95, 98, 99]
    train_classes = [c for c in range(100) if c not in val and c not in test]
    teacher, student = gkd_split(50)
    assert teacher == train_classes[:50]
    assert student == train_classes[50:] + val + test and not set(teacher) & set(student)
    same_t, same_s = gkd_split(0)
    assert same_t == same_s
    overlap_t, overlap_s = gkd_split(20)
    assert len(set(overlap_t) & set(overlap_s)) == 30


def test_two_stage_refilled_with_overlapping_classes(tmp_path):
    from kdforge.engine.checkpoint import read_checkpoint

    teacher = _digits_teacher_on([0, 1, 2, 3, 4, 5], tmp_path / "t")
    args = [f"out={tmp_path / 's'}", "epochs=6", "method=refilled", f"teacher_checkpoint={teacher}",
            "data.classes=[4,5,6,7,8,9]", "data.val_per_class=10", "threads=1", "tensorboard=false", "progress=false",
            # lambda 1: with the spec's 100 and the whole student at the stage-2 rate, the 32-unit
            # MLP's stage 2 does not train on 6 epochs of digits (18 % top-1)
            "method_args.stage2_weight=1"]
    logs = []
    summary = train(load_config("digits-student", args), echo=logs.append)
    stage1 = summary["stages"]["stage1"]
    # the paper's budget: each stage the whole schedule
    assert stage1["epochs"] == 6 and summary["stages"]["stage2"]["epochs"] == 6 and summary["epochs"] == 12
    assert stage1["best_selected_on"] == "val_ncm_top1" and summary["best_selected_on"] == "val"
    # stage 1 chose its checkpoint by NCM accuracy on the held-out split, and stage 2 started from it
    evals = [json.loads(line) for line in (tmp_path / "s" / "stage1" / "metrics.jsonl").read_text().splitlines()
             if '"type": "eval"' in line]
    best = read_checkpoint(tmp_path / "s" / "stage1" / "best.pt")
    assert best["selected_on"] == "val_ncm_top1"
    assert best["epoch"] == max(evals, key=lambda r: r["val_ncm_top1"])["epoch"]
    assert max(r["test_ncm_top1"] for r in evals) > 50  # six classes: chance is 17 %
    assert any("initialised from" in line and "best.pt" in line for line in logs)
    assert summary["top1_last"] > 60 and summary["teacher_top1"] is None
    # "best (test)" is the last stage's best test epoch: never below its last epoch (stage 1 trains no classifier)
    stage2_evals = [json.loads(line) for line in (tmp_path / "s" / "stage2" / "metrics.jsonl").read_text().splitlines()
                    if '"type": "eval"' in line]
    assert summary["top1_best_test"] == max(r["test_top1"] for r in stage2_evals) >= summary["top1_last"]
    from kdforge.bench.accuracy import best_on_test
    from kdforge.demo import format_table

    assert best_on_test(summary) == summary["top1_best_test"]
    row = format_table(summary, [{**summary, "row": "refilled"}]).splitlines()[-1].split("|")
    assert float(row[4]) >= float(row[3])  # the demo's "best (test)" column against its "last" column
    # the finished pipeline is not trained again without --resume, and resuming it is a no-op
    with pytest.raises(UserError, match="--resume"):
        train(load_config("digits-student", args), echo=lambda m: None)
    again = train(load_config("digits-student", args), resume=True, echo=lambda m: None)
    assert again["top1_last"] == summary["top1_last"]


def test_refilled_needs_a_held_out_split_and_stage2_scales_the_backbone_rate(tmp_path):
    from kdforge.config import from_dict
    from kdforge.methods import METHODS, MethodContext
    from kdforge.methods.refilled import Refilled, RefilledConfig
    from kdforge.models import create_model

    with pytest.raises(ConfigError, match="val_per_class"):
        Refilled.pipeline(load_config("digits-student", ["method=refilled", "teacher_checkpoint=x"]))
    student = create_model("cnn8", 6, in_channels=1)
    ctx = MethodContext(num_classes=6, student=student, teacher=create_model("cnn8", 4, in_channels=1))
    method = METHODS.get("refilled")(from_dict(RefilledConfig, {"stage": 2}), ctx)
    assert method.student_lr_scales(student) == {"": 1.0, "fc": 1.0}  # the official code's current revision
    slow = METHODS.get("refilled")(from_dict(RefilledConfig, {"stage": 2, "stage2_backbone_lr": 0.1}), ctx)
    assert slow.student_lr_scales(student) == {"": 0.1, "fc": 1.0}


@pytest.mark.parametrize("budget, stage1_epochs, expected", [("paper", 0, (20, 20)), ("equal", 0, (10, 10)),
                                                             ("paper", 5, (5, 20)), ("equal", 5, (5, 15))])
def test_refilled_budgets_and_the_official_optimiser(budget, stage1_epochs, expected):
    from kdforge.methods.refilled import Refilled

    args = ["method=refilled", "teacher_checkpoint=x", "data.val_per_class=5", "epochs=20", "optim.lr=0.1",
            f"method_args.budget={budget}", f"method_args.stage1_epochs={stage1_epochs}"]
    from kdforge.engine.pipeline import stage_configs

    (_, stage1), (_, stage2) = stage_configs(load_config("digits-student", args))
    assert (stage1.epochs, stage2.epochs) == expected
    assert stage1.optim.nesterov and stage2.optim.nesterov  # Nesterov SGD in both stages, as the official code
    assert stage1.optim.schedule == "cosine" and stage1.optim.min_lr == pytest.approx(0.01)
    assert stage2.optim.milestones == sorted({max(1, round(expected[1] * f)) for f in (0.5, 0.7, 0.9)})
    assert Refilled.pipeline(load_config("digits-student", args)) and stage2.optim.gamma == 0.2


def test_local_centres_and_confidence_weights_train(tmp_path):
    teacher = _digits_teacher_on([0, 1, 2, 3, 4, 5], tmp_path / "t")
    summary = train(load_config("digits-student", [
        f"out={tmp_path / 's'}", "epochs=2", "method=refilled", f"teacher_checkpoint={teacher}",
        "data.classes=[0,1,2,3,4,5]", "method_args.stage=2", "method_args.centers=local",
        "method_args.weighting=confidence", "threads=1", "tensorboard=false", "progress=false"]), echo=lambda m: None)
    assert summary["top1_last"] > 30
