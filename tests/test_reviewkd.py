"""ReviewKD: the hierarchical context loss against a formula written here from the official code, pre-activation
taps read through hooks, and a training step on zoo pairs of different shapes."""

import numpy as np
import pytest
import torch

from kdforge.data.inmemory import Batch
from kdforge.losses import hcl_loss
from kdforge.methods import METHODS, MethodContext, StepState, build_method
from kdforge.models import TappedModel, create_model


def _pool(x, size):  # adaptive average pooling for sizes that divide the input
    n, c, h, w = x.shape
    return x.reshape(n, c, size, h // size, size, w // size).mean(axis=(3, 5))


def test_hcl_golden_value():
    rng = np.random.RandomState(0)
    fs = [rng.randn(2, 3, 8, 8), rng.randn(2, 4, 2, 2), rng.randn(2, 5, 1, 1)]
    ft = [rng.randn(*f.shape) for f in fs]
    expected = 0.0
    for s, t in zip(fs, ft):
        loss, weight, norm = np.mean((s - t) ** 2), 1.0, 1.0
        for size in (4, 2, 1):
            if size >= s.shape[2]:
                continue
            weight /= 2
            loss += weight * np.mean((_pool(s, size) - _pool(t, size)) ** 2)
            norm += weight
        expected += loss / norm
    got = hcl_loss([torch.tensor(f) for f in fs], [torch.tensor(f) for f in ft])
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_preact_taps_read_the_stage_before_its_final_relu_and_change_nothing_else():
    model = create_model("resnet8x4", 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        out = TappedModel(model, ("stages", "preact_stages"))(x)
    assert torch.equal(out.logits, plain)
    for i in range(3):
        pre, post = out.features[f"preact{i}"], out.features[f"stage{i}"]
        assert (pre < 0).any() and torch.equal(torch.relu(pre), post)
    mobile = create_model("MobileNetV2", 10).eval()  # linear bottlenecks: the stage output is already pre-activation
    with torch.no_grad():
        out = TappedModel(mobile, ("stages", "preact_stages"))(x)
    assert torch.equal(out.features["preact0"], out.features["stage0"])


@pytest.mark.parametrize("student, teacher", [("resnet8x4", "resnet32x4"), ("MobileNetV2", "vgg13")])
def test_reviewkd_trains_the_student_and_its_fusion_modules_with_a_warm_up(student, teacher):
    torch.manual_seed(0)
    s, t = create_model(student, 10), create_model(teacher, 10).eval()
    method = build_method("reviewkd", {}, MethodContext(num_classes=10, student=s, teacher=t))
    cls = METHODS.get("reviewkd")
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_out = TappedModel(t, cls.teacher_taps)(x)
    s_view = TappedModel(s, cls.student_taps)
    early = method(Batch(torch.arange(4), x, y), s_view(x), t_out, StepState(0, 0, 0.0))
    late = method(Batch(torch.arange(4), x, y), s_view(x), t_out, StepState(30, 0, 0.0))
    assert late["reviewkd"].item() == pytest.approx(20 * early["reviewkd"].item(), rel=1e-4)  # ramp (epoch+1)/20
    sum(late.values()).backward()
    assert all(p.grad is not None for p in method.abfs.parameters())
    assert next(s.parameters()).grad.abs().sum() > 0


def test_a_compiled_run_compiles_the_fusion_modules_beside_the_student():
    # they cost more per step than a resnet8 student, so the trainer's compile list must hold each of them
    s, t = create_model("resnet8", 10), create_model("resnet20", 10).eval()
    method = build_method("reviewkd", {}, MethodContext(num_classes=10, student=s, teacher=t))
    assert [id(m) for m in method.modules_to_compile()] == [id(m) for m in method.abfs]
