"""mdistiller's feature baselines (NST, SP, PKT, VID, KDSVD): golden values against formulas written here from the
papers and the official code, the properties each should have, and a training step through hooks on a zoo pair."""

import math

import numpy as np
import pytest
import torch

from kdforge.data.inmemory import Batch
from kdforge.losses import kdsvd_loss, nst_loss, pkt_loss, sp_loss, vid_loss
from kdforge.methods import METHODS, MethodContext, StepState, build_method
from kdforge.models import TappedModel, create_model

RNG = np.random.RandomState(0)


def _unit_rows(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def test_nst_golden_value():
    fs, ft = RNG.randn(2, 3, 4, 4), RNG.randn(2, 5, 4, 4)
    s, t = _unit_rows(fs.reshape(2, 3, 16), 2), _unit_rows(ft.reshape(2, 5, 16), 2)

    def k(a, b):  # mean over samples and channel pairs of <a_i, b_j>^2
        return np.mean([(a[n] @ b[n].T) ** 2 for n in range(2)])

    expected = k(t, t) + k(s, s) - 2 * k(s, t)
    got = nst_loss([torch.tensor(fs)], [torch.tensor(ft)])
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert nst_loss([torch.tensor(ft)], [torch.tensor(ft)]).item() == pytest.approx(0.0, abs=1e-6)


def test_sp_golden_value():
    fs, ft = RNG.randn(5, 3, 2, 2), RNG.randn(5, 7, 4, 4)
    gs, gt = fs.reshape(5, -1) @ fs.reshape(5, -1).T, ft.reshape(5, -1) @ ft.reshape(5, -1).T
    expected = np.sum((_unit_rows(gt, 1) - _unit_rows(gs, 1)) ** 2) / 25
    assert sp_loss(torch.tensor(fs), torch.tensor(ft)).item() == pytest.approx(expected, rel=1e-5)


def test_pkt_golden_value():
    es, et = RNG.randn(6, 4), RNG.randn(6, 9)

    def probabilities(e):
        c = (_unit_rows(e, 1) @ _unit_rows(e, 1).T + 1) / 2
        return c / c.sum(1, keepdims=True)

    ps, pt = probabilities(es), probabilities(et)
    expected = np.mean(pt * np.log((pt + 1e-7) / (ps + 1e-7)))
    assert pkt_loss(torch.tensor(es), torch.tensor(et)).item() == pytest.approx(expected, rel=1e-4)


def test_vid_golden_value_and_its_variance_is_trained():
    mu, t, log_scale = RNG.randn(2, 3, 4, 4), RNG.randn(2, 3, 4, 4), RNG.randn(3)
    var = np.log1p(np.exp(log_scale)) + 1e-5
    expected = np.mean(0.5 * ((mu - t) ** 2 / var[None, :, None, None] + np.log(var)[None, :, None, None]))
    got = vid_loss(torch.tensor(mu), torch.tensor(t), torch.tensor(log_scale))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    method = build_method("vid", {}, MethodContext(num_classes=10, student=create_model("resnet8", 10),
                                                   teacher=create_model("resnet14", 10)))
    names = {n for n, _ in method.named_parameters()}
    assert {"log_scales.0", "log_scales.1", "log_scales.2"} <= names  # trained with the regressors
    var0 = math.log1p(math.exp(method.log_scales[0][0].item())) + 1e-5
    assert var0 == pytest.approx(5.0, rel=1e-6)


def test_kdsvd_is_zero_for_the_teachers_own_features_and_positive_otherwise():
    torch.manual_seed(0)
    ft = [torch.randn(3, 8, 8, 8), torch.randn(3, 8, 4, 4), torch.randn(3, 8, 2, 2)]
    assert kdsvd_loss(ft, ft).item() == pytest.approx(0.0, abs=1e-6)
    fs = [f + torch.randn_like(f) for f in ft]
    assert kdsvd_loss(fs, ft).item() > 0


@pytest.mark.parametrize("name", ["nst", "sp", "pkt", "vid", "kdsvd"])
def test_each_baseline_trains_a_zoo_pair_through_hooks(name):
    torch.manual_seed(0)
    student, teacher = create_model("resnet8x4", 10), create_model("resnet32x4", 10).eval()
    method = build_method(name, {}, MethodContext(num_classes=10, student=student, teacher=teacher))
    cls = METHODS.get(name)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_out = TappedModel(teacher, cls.teacher_taps)(x)
    terms = method(Batch(torch.arange(4), x, y), TappedModel(student, cls.student_taps)(x), t_out,
                   StepState(0, 0, 0.0))
    assert set(terms) == {"ce", name} and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert student.conv1.weight.grad.abs().sum() > 0


def test_kdsvd_refuses_stages_of_different_widths_on_one_line():
    from kdforge.errors import ConfigError

    with pytest.raises(ConfigError, match="same channel count"):
        build_method("kdsvd", {}, MethodContext(num_classes=10, student=create_model("resnet8", 10),
                                                teacher=create_model("resnet32x4", 10)))
