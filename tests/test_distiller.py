"""kdforge.Distiller: the README's own loop runs and learns; what it trains, saves and asks for; the trainer's step
goes through it."""

import re

import pytest
import torch
import torch.nn.functional as F

import kdforge
from kdforge.errors import ConfigError
from kdforge.models import create_model

from conftest import REPO, shared_data_dir


def readme_loop() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- own-loop[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its own-loop example"
    return match.group(1)


def cifar_batches(n_per_class: int, batch: int):
    """Real CIFAR-10 images (the first n per class of the JPEG training split), normalised, in batches."""
    from kdforge.data import DataConfig, load_data

    data = shared_data_dir()
    if data is None:
        pytest.skip("cifar10-jpeg.tar.gz not found beside the repository (../shared/data)")
    bundle = load_data(DataConfig(dataset="cifar10-jpeg", root=str(data), train_per_class=n_per_class), "cpu")
    stream = bundle.stream("train", batch, train=False)
    return [(b.input, b.target) for b in stream.epoch(0)]


def test_the_readme_loop_trains_and_its_loss_falls(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    loader = cifar_batches(32, 64)  # 320 real images, 5 batches
    teacher = create_model("resnet20", num_classes=10)
    opt = torch.optim.SGD(teacher.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):  # a teacher that has seen the images, so that its targets carry something
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(teacher(x), y).backward()
            opt.step()
    monkeypatch.chdir(tmp_path)
    save_file(teacher.state_dict(), "teacher.safetensors")
    scope = {"loader": loader, "epochs": 4}
    exec(compile(readme_loop(), "README.md", "exec"), scope)
    history = scope["history"]
    assert len(history) == 4 and all(map(lambda v: v == v, history))
    assert history[-1] < 0.7 * history[0], history
    saved = torch.load("distiller.pt")
    assert saved and all(k.startswith(("student.", "method.")) or k == "_extra_state" for k in saved)
    assert saved["_extra_state"] == {"step": 4 * len(loader)}  # the step count, for warm-ups after a resume


def test_parameters_are_the_student_and_the_methods_heads_never_the_teacher():
    teacher, student = create_model("resnet20", 10), create_model("resnet8", 10)
    d = kdforge.Distiller(teacher, student, method="crd", dataset_size=64, train_labels=torch.arange(64) % 10)
    got = {id(p) for p in d.parameters()}
    heads = {id(p) for p in d.method.parameters() if p.requires_grad}
    assert heads and got == {id(p) for p in student.parameters()} | heads
    assert not got & {id(p) for p in teacher.parameters()}
    assert sum(len(g["params"]) for g in d.param_groups()) == len(got)


def test_kd_terms_match_the_formula_and_the_state_round_trips():
    torch.manual_seed(1)
    teacher, student = create_model("resnet20", 10), create_model("resnet8", 10)
    d = kdforge.Distiller(teacher, student, method="kd", temperature=4.0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    out = d(x, y)
    s, t = student(x), teacher.eval()(x)
    T = 4.0
    kl = (F.softmax(t / T, 1) * (F.log_softmax(t / T, 1) - F.log_softmax(s / T, 1))).sum(1).mean() * T * T
    torch.testing.assert_close(out.terms["kd"], 0.9 * kl, rtol=1e-4, atol=1e-5)  # folded teacher: rounding only
    torch.testing.assert_close(out.terms["ce"], 0.1 * F.cross_entropy(s, y))
    torch.testing.assert_close(out.loss, out.terms["kd"] + out.terms["ce"])
    fresh = kdforge.Distiller(teacher, create_model("resnet8", 10), method="kd", temperature=4.0)
    fresh.load_state_dict(d.state_dict())
    assert fresh.step == d.step == 1
    d.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x, y).loss, d(x, y).loss)


def test_what_a_method_needs_is_asked_for_on_one_line():
    teacher, student = create_model("resnet20", 10), create_model("resnet8", 10)
    with pytest.raises(ConfigError, match="needs a teacher"):
        kdforge.Distiller(None, student, method="kd")
    crd = kdforge.Distiller(teacher, student, method="crd", dataset_size=64, train_labels=torch.arange(64) % 10)
    with pytest.raises(ConfigError, match="indices"):
        crd(torch.randn(4, 3, 32, 32), torch.arange(4))
    ickd = kdforge.Distiller(teacher, create_model("resnet8", 10), method="ickd", dataset_size=40)
    x, y = torch.randn(40, 3, 32, 32), torch.arange(40) % 10
    with pytest.raises(ConfigError, match="prepare"):
        ickd(x[:8], y[:8], torch.arange(8))
    ickd.prepare([(x[i:i + 20], y[i:i + 20], torch.arange(i, i + 20)) for i in (0, 20)])
    out = ickd(x[:8], y[:8], torch.arange(8))
    assert {"picd", "nicd"} <= set(out.terms) and torch.isfinite(out.loss)


def test_the_trainer_steps_through_the_distiller(tmp_path, monkeypatch):
    from kdforge.config import load_config
    from kdforge.distiller import Distiller
    from kdforge.engine.pipeline import train

    calls = []
    original = Distiller.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Distiller, "forward", counted)
    from kdforge.engine.checkpoint import read_checkpoint

    train(load_config("digits-teacher", ["epochs=2", "data.batch_size=100", "threads=1", "progress=false",
                                         "tensorboard=false", f"out={tmp_path}"]), echo=lambda m: None)
    steps = read_checkpoint(tmp_path / "checkpoint.pt")["progress"]["step"]
    assert steps > 0 and len(calls) == steps  # one call per optimiser step


@pytest.mark.parametrize("method,args", [("crd", {}), ("ickd_tf", {})])
def test_an_evaluation_pass_never_writes_a_methods_memory(method, args):
    torch.manual_seed(0)
    teacher, student = create_model("resnet20", 10), create_model("resnet8", 10)
    d = kdforge.Distiller(teacher, student, method=method, dataset_size=16, train_labels=torch.arange(16) % 4, **args)
    before = {k: v.clone() for k, v in d.method.state_dict().items()}
    d.eval()
    with torch.no_grad():
        d(torch.randn(8, 3, 32, 32), torch.arange(8) % 4, torch.arange(8))
    d.train()
    d.after_step()
    assert all(torch.equal(before[k], v) for k, v in d.method.state_dict().items())
    d(torch.randn(8, 3, 32, 32), torch.arange(8) % 4, torch.arange(8))
    d.after_step()  # a training step does write
    assert any(not torch.equal(before[k], v) for k, v in d.method.state_dict().items())
