"""The frozen teacher with BatchNorm folded into its convolutions: the same outputs as the unfolded teacher (up to
rounding), hooks by module path still fire, and a fold that would change the output is refused."""

import pytest
import torch
import torch.nn as nn

from kdforge.models import TappedModel, create_model
from kdforge.models.fold import fold_batchnorm, full_precision


def _with_statistics(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def close(a, b):
    # fp32 rounding grows with the values' scale: stage features reach ~100 under random statistics
    return torch.allclose(a, b, atol=1e-4 * max(1.0, b.abs().max().item()), rtol=1e-4)


@pytest.mark.parametrize("name", ["resnet20", "vgg8", "MobileNetV2", "ShuffleV2", "wrn_16_1"])
def test_folded_teacher_matches_the_unfolded_one_and_keeps_its_taps(name, device):
    torch.manual_seed(0)
    teacher = _with_statistics(create_model(name, 10)).to(device)
    folded, count = fold_batchnorm(teacher, torch.randn(2, 3, 32, 32, device=device))
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in teacher.modules())
    if name == "wrn_16_1":  # pre-activation blocks: BatchNorm follows additions, not convolutions
        assert count < batchnorms
    else:
        assert count > 0 and sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == batchnorms - count
    x = torch.randn(8, 3, 32, 32, device=device)
    with torch.no_grad(), full_precision():  # the fold's own error, not TF32's rounding on CUDA
        plain = TappedModel(teacher, ("embedding", "stages"))(x)
        fast = TappedModel(folded, ("embedding", "stages"))(x)
    assert close(fast.logits, plain.logits)
    for key, value in plain.features.items():
        assert close(fast.features[key], value), key
    assert all(isinstance(m, nn.BatchNorm2d) for m in teacher.modules() if m.__class__.__name__ == "BatchNorm2d")


def test_a_fold_that_would_change_the_output_is_refused():
    class Shared(nn.Module):  # the convolution's output is read by the BatchNorm and by the sum
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = _with_statistics(Shared())
    folded, count = fold_batchnorm(model, torch.randn(2, 3, 8, 8))
    assert folded is model and count == 0


def test_a_run_records_the_folded_teacher_and_distils_as_before(tmp_path):
    from kdforge.config import load_config
    from kdforge.engine.pipeline import train

    # on the CPU, where teacher_channels_last=auto turns the folded teacher channels_last
    common = ["threads=1", "progress=false", "tensorboard=false", "deterministic=true", "device=cpu"]
    train(load_config("digits-teacher", [f"out={tmp_path / 't'}", "epochs=1", *common]), echo=lambda m: None)
    runs = {}
    for fold in (True, False):
        runs[fold] = train(load_config("digits-student", [
            f"out={tmp_path / f's{fold}'}", "epochs=1", "method=kd", f"teacher_checkpoint={tmp_path / 't'}",
            f"teacher_fold_bn={str(fold).lower()}", *common]), echo=lambda m: None)
    assert runs[True]["teacher_folded_batchnorms"] == 6 and runs[False]["teacher_folded_batchnorms"] == 0  # cnn8
    assert runs[True]["teacher_channels_last"] is True and runs[False]["teacher_channels_last"] is False  # CPU, auto
    assert runs[True]["channels_last"] is True  # an eager CPU run, auto
    assert runs[True]["teacher_top1"] == pytest.approx(runs[False]["teacher_top1"])
    assert runs[True]["top1_last"] == pytest.approx(runs[False]["top1_last"], abs=0.5)


def test_a_channels_last_teacher_gives_the_same_outputs_and_leaves_the_callers_model_alone(device):
    from kdforge import Distiller

    torch.manual_seed(0)
    teacher = _with_statistics(create_model("resnet20", 10)).to(device)
    student = create_model("resnet8", 10).to(device)
    distiller = Distiller(teacher, student, "kd", teacher_channels_last=True)
    conv = distiller.teacher_forward.get_submodule("conv1")
    assert distiller.teacher_channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert teacher.get_submodule("conv1").weight.is_contiguous()  # the caller's teacher keeps its layout
    x = torch.randn(8, 3, 32, 32, device=device)
    with torch.no_grad(), full_precision():
        plain = TappedModel(teacher, ())(x)
        fast = distiller.teacher_outputs(x)
    assert close(fast.logits, plain.logits)
    unfolded = Distiller(teacher, student, "kd", fold_teacher_bn=False, teacher_channels_last=True)
    assert not unfolded.teacher_channels_last  # no copy of our own to convert


def test_teacher_channels_last_auto_is_on_for_cpu_and_follows_the_students_layout_elsewhere():
    from kdforge.config import load_config
    from kdforge.engine.classification import teacher_channels_last
    from kdforge.errors import ConfigError

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = load_config("digits-student", [])
    assert teacher_channels_last(auto, cpu, False) and not teacher_channels_last(auto, cuda, False)
    assert teacher_channels_last(auto, cuda, True)
    assert not teacher_channels_last(load_config("digits-student", ["teacher_channels_last=false"]), cpu, True)
    with pytest.raises(ConfigError, match="teacher_channels_last must be true, false or auto"):
        load_config("digits-student", ["teacher_channels_last=sometimes"])


def test_student_channels_last_auto_is_on_for_an_eager_cpu_run_only():
    from kdforge.config import load_config
    from kdforge.engine.classification import student_channels_last
    from kdforge.engine.compilation import AUTO_COMPILE_MIN_STEPS, compile_decision
    from kdforge.errors import ConfigError

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    short, long_ = 10, 10 * AUTO_COMPILE_MIN_STEPS

    def layout(overrides, device, steps):  # the set-up's chain: the compile decision, then the layout
        cfg = load_config("digits-student", overrides)
        return student_channels_last(cfg, device, compile_decision(cfg.compile, steps, device)[0])

    assert layout([], cpu, short)  # compile=auto leaves a short run eager
    assert not layout(["compile=true"], cpu, short)
    assert layout(["compile=false"], cpu, long_)
    assert not layout([], cuda, short)
    assert not layout(["channels_last=false"], cpu, short)
    assert layout(["channels_last=true"], cuda, long_)
    with pytest.raises(ConfigError, match="channels_last must be true, false or auto"):
        load_config("digits-student", ["channels_last=maybe"])
