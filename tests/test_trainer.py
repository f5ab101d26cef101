import json
import math
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from kdforge.config import OptimConfig, load_config
from kdforge.engine.checkpoint import read_checkpoint
from kdforge.engine.pipeline import train
from kdforge.engine.run import RunLock, stop_signals
from kdforge.engine.schedule import learning_rate
from kdforge.errors import ConfigError, FolderInUseError, NonFiniteLossError, UserError

from conftest import run_cli

FAST = ["threads=1", "tensorboard=false", "log_every=5"]


def digits(preset, out, *extra):
    return load_config(preset, [f"out={out}", *FAST, *extra])


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    train(digits("digits-teacher", out, "epochs=4"), echo=lambda m: None)
    return out


def test_plain_training_writes_summary_metrics_and_checkpoint(teacher_dir):
    summary = json.loads((teacher_dir / "summary.json").read_text())
    for key in ("method", "teacher", "student", "dataset", "seed", "epochs", "top1_last", "top1_best", "wall_seconds",
                "train_images_per_second", "config", "versions"):
        assert key in summary
    assert summary["method"] == "ce" and summary["epochs"] == 4 and summary["top1_last"] > 80
    assert summary["top1_best"] >= summary["top1_last"] and summary["versions"]["torch"] == torch.__version__ \
        and summary["versions"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    records = [json.loads(line) for line in (teacher_dir / "metrics.jsonl").read_text().splitlines()]
    # compile and amp: the one record of each decision
    assert {r["type"] for r in records} == {"compile", "amp", "train", "epoch", "eval"}
    assert [r["epoch"] for r in records if r["type"] == "eval"] == [1, 2, 3, 4]
    # each epoch's own rate beside the run's average so far: with equal epochs, the average over the first two is
    # the harmonic mean of their two rates
    first, second = [r for r in records if r["type"] == "epoch"][:2]
    both = 2 / (1 / first["epoch_images_per_second"] + 1 / second["epoch_images_per_second"])
    assert first["images_per_second"] == pytest.approx(first["epoch_images_per_second"])
    assert second["images_per_second"] == pytest.approx(both, rel=1e-6)
    ckpt = read_checkpoint(teacher_dir / "checkpoint.pt")
    assert ckpt["arch"] == "cnn8" and ckpt["progress"]["epoch"] == 4


def test_kd_run_records_the_teachers_measured_accuracy(teacher_dir, tmp_path):
    summary = train(digits("digits-student", tmp_path / "kd", "method=kd", f"teacher_checkpoint={teacher_dir}",
                           "epochs=2"), echo=lambda m: None)
    teacher_summary = json.loads((teacher_dir / "summary.json").read_text())
    assert summary["teacher"] == "cnn8" and summary["method"] == "kd"
    assert math.isclose(summary["teacher_top1"], teacher_summary["top1_last"], abs_tol=1e-6)
    terms = [json.loads(line) for line in (tmp_path / "kd" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/kd" in r and "loss/ce" in r for r in terms)


def test_teacher_problems_are_config_errors(teacher_dir, tmp_path):
    with pytest.raises(ConfigError, match="needs a teacher"):
        train(digits("digits-student", tmp_path / "a", "method=kd"))
    with pytest.raises(ConfigError, match="10 classes but dataset digits has 3"):
        train(digits("digits-student", tmp_path / "b", "method=kd", f"teacher_checkpoint={teacher_dir}",
                     "data.classes=[0,1,2]"))
    with pytest.raises(UserError, match="does not exist"):
        train(digits("digits-student", tmp_path / "c", "method=kd", f"teacher_checkpoint={tmp_path / 'none.pt'}"))


def test_bf16_autocast_path_trains(tmp_path, device):
    summary = train(digits("digits-student", tmp_path, "epochs=2", "amp=true", f"device={device.type}"),
                    echo=lambda m: None)
    assert summary["top1_last"] > 50


def test_a_conv_student_trains_in_bf16_and_channels_last_and_its_weights_evaluate_as_reported(tmp_path):
    """The settings a suite's -bf16 rows train with: the weights saved from a channels_last bf16 run load into a
    plain model, and evaluating them in float32 NCHW gives the run's own test top-1 to within bf16 rounding."""
    summary = train(digits("digits-teacher", tmp_path, "epochs=3", "amp=true", "channels_last=true"),
                    echo=lambda m: None)
    assert summary["top1_last"] > 60
    result = run_cli("eval", str(tmp_path), "--dataset", "digits")  # float32, NCHW
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top1"] == pytest.approx(summary["top1_last"], abs=2.0)


def test_compiled_kd_run_trains_like_the_eager_one_and_saves_plain_weights(teacher_dir, tmp_path):
    runs = {}
    for mode in ("false", "true"):
        runs[mode] = train(digits("digits-student", tmp_path / mode, "method=kd", f"teacher_checkpoint={teacher_dir}",
                                  "epochs=2", "deterministic=true", f"compile={mode}", "amp=false"),
                           echo=lambda m: None)
    eager, compiled = (read_checkpoint(tmp_path / m / "checkpoint.pt")["model"] for m in ("false", "true"))
    assert eager.keys() == compiled.keys()  # no `_orig_mod.` prefix: checkpoints load into a plain model
    # the same float32 arithmetic, fused differently: the weights agree to float rounding over 2 epochs of steps
    # (in bf16 autocast, which amp=auto picks on a GPU, compiled kernels keep float32 where eager ones round)
    for name, value in eager.items():
        if value.is_floating_point():
            assert torch.allclose(value, compiled[name], atol=1e-3, rtol=1e-3), name
    assert abs(runs["true"]["top1_last"] - runs["false"]["top1_last"]) < 1.0
    assert runs["true"]["compiled"] and not runs["false"]["compiled"]


def test_a_compiled_dml_run_compiles_its_peer_and_trains_it_like_the_eager_one(tmp_path, monkeypatch):
    compiled_classes = []
    plain_compile = torch.nn.Module.compile

    def spy(module, *args, **kwargs):  # which networks the trainer compiles, in order
        compiled_classes.append(type(module).__name__)
        return plain_compile(module, *args, **kwargs)

    from torch._dynamo import config as dynamo_config

    from kdforge.engine.compilation import RECOMPILE_LIMIT

    monkeypatch.setattr(torch.nn.Module, "compile", spy)
    with dynamo_config.patch(recompile_limit=8):  # dynamo's default, restored after
        for mode in ("false", "true"):
            train(digits("digits-student", tmp_path / mode, "method=dml", "epochs=1", "deterministic=true",
                         f"compile={mode}"), echo=lambda m: None)
        # raised for the compiled run: past dynamo's 8 graphs a forward would silently run eager for the rest of it
        assert dynamo_config.recompile_limit == RECOMPILE_LIMIT
    assert len(compiled_classes) == 2  # the student and its peer; the eager run compiled nothing
    eager, compiled = (read_checkpoint(tmp_path / m / "checkpoint.pt")["method"] for m in ("false", "true"))
    assert eager.keys() == compiled.keys() and any(k.startswith("peers.models.0.") for k in eager)
    for name, value in eager.items():
        if value.is_floating_point():
            assert torch.allclose(value, compiled[name], atol=1e-3, rtol=1e-3), name


def test_a_short_run_under_compile_auto_stays_eager_and_says_why(tmp_path):
    lines = []
    summary = train(digits("digits-teacher", tmp_path, "epochs=1"), echo=lines.append)
    assert summary["config"]["compile"] == "auto" and summary["compiled"] is False
    assert "too few to recover the compile time" in summary["compile_reason"]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"type": "compile", "step": 0, "compiled": False, "reason": summary["compile_reason"]} in logged
    assert not any("compil" in line for line in lines)  # an eager run says nothing about it on the console


def test_amp_auto_is_resolved_for_the_device_and_recorded(tmp_path):
    from kdforge.engine.run import amp_decision

    lines = []
    summary = train(digits("digits-teacher", tmp_path, "epochs=1"), echo=lines.append)
    expected = amp_decision("auto", torch.device(summary["device"]))
    assert summary["config"]["amp"] == "auto" and (summary["amp"], summary["amp_reason"]) == expected
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"type": "amp", "step": 0, "amp": expected[0], "reason": expected[1]} in logged
    assert not any("amp" in line or "bf16" in line for line in lines)  # the console stays for errors and epochs
    assert read_checkpoint(tmp_path / "checkpoint.pt")["amp"] is expected[0]  # for `kdforge eval`


def test_a_resumed_run_keeps_the_amp_decision_of_its_first_sitting(tmp_path):
    from kdforge.engine.run import amp_decision
    from kdforge.engine.trainer import Trainer

    here = amp_decision("auto", torch.device("cpu"))
    elsewhere = (not here[0], "amp=auto: decided on other hardware")  # what a first sitting there recorded
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"type": "amp", "step": 0, "amp": elsewhere[0], "reason": elsewhere[1]}) + "\n"
        + json.dumps({"type": "amp", "step": 0, "amp": here[0], "reason": "a later sitting"}) + "\n")

    def decided(*overrides, resume=True):
        trainer = Trainer(digits("digits-teacher", tmp_path, "device=cpu", *overrides), resume=resume)
        return trainer.amp, trainer.amp_reason

    assert decided() == (elsewhere[0], f"{elsewhere[1]} (the run's first sitting; kept on resume)")
    assert decided(resume=False) == here  # a fresh run decides for its own machine
    assert decided("amp=false") == (False, "amp=false") and decided("amp=true") == (True, "amp=true")


def test_non_finite_loss_stops_with_step_and_term_and_keeps_the_checkpoint(tmp_path):
    cfg = digits("digits-student", tmp_path, "epochs=3", "optim.lr=1e12", "optim.schedule=constant",
                 "optim.momentum=0.0", "log_every=100")
    with pytest.raises(NonFiniteLossError, match=r"loss term 'ce' became non-finite at step \d+ \(epoch \d\)"):
        train(cfg, echo=lambda m: None)
    if (tmp_path / "checkpoint.pt").exists():
        ckpt = read_checkpoint(tmp_path / "checkpoint.pt")
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_stop_signals_are_restored_after_a_run_except_when_it_ends_stopping_for_a_dead_peer():
    class Owner:
        stop_signal = None

    before, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with stop_signals(Owner()):
            assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is before
        with pytest.raises(ValueError):  # another error: the process may go on (a sweep's next run), restored
            with stop_signals(Owner(), stopping=lambda exc: isinstance(exc, RuntimeError)):
                raise ValueError("a bug")
        assert signal.getsignal(signal.SIGTERM) is before
        # a rank that stops because a peer died: torchrun's SIGTERM to the survivors must not kill it silently
        with pytest.raises(RuntimeError):
            with stop_signals(Owner(), stopping=lambda exc: isinstance(exc, RuntimeError)):
                raise RuntimeError("Connection closed by peer")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is before_int  # Ctrl-C as before the run
    finally:
        signal.signal(signal.SIGTERM, before)


def test_existing_run_folder_needs_resume_and_is_locked(teacher_dir, tmp_path):
    with pytest.raises(UserError, match="--resume"):
        train(digits("digits-teacher", teacher_dir, "epochs=4"))
    with RunLock(tmp_path):
        with pytest.raises(FolderInUseError, match="in use by another kdforge run"):
            train(digits("digits-teacher", tmp_path))


def test_resume_of_a_finished_run_changes_nothing(teacher_dir):
    saved = read_checkpoint(teacher_dir / "checkpoint.pt")
    before, trained_for = saved["model"], saved["progress"]["wall_seconds"]
    summary = train(digits("digits-teacher", teacher_dir, "epochs=4"), resume=True, echo=lambda m: None)
    after = read_checkpoint(teacher_dir / "checkpoint.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before) and summary["epochs"] == 4
    # the reported wall time still covers the sitting that did the training, not only this empty one
    assert trained_for > 0 and summary["wall_seconds"] >= trained_for


def test_learning_rate_schedules():
    cosine = OptimConfig(lr=0.1, schedule="cosine")
    assert learning_rate(cosine, 0, 10, 5) == pytest.approx(0.1)
    assert learning_rate(cosine, 25, 10, 5) == pytest.approx(0.05)
    assert learning_rate(cosine, 50, 10, 5) == pytest.approx(0.0, abs=1e-12)
    step = OptimConfig(lr=0.05, schedule="step", milestones=[150, 180, 210])
    assert [learning_rate(step, e * 4, 4, 240) for e in (0, 149, 150, 180, 239)] == pytest.approx(
        [0.05, 0.05, 0.005, 0.0005, 0.00005])
    warm = OptimConfig(lr=0.1, schedule="constant", warmup_epochs=2)
    assert learning_rate(warm, 0, 5, 10) == pytest.approx(0.01) and learning_rate(warm, 9, 5, 10) == pytest.approx(0.1)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from kdforge.config import load_config
    from kdforge.engine import trainer as T
    from kdforge.engine.pipeline import train

    kill_at = int(sys.argv[2])
    original = T.Trainer._step
    def step_then_maybe_die(self, batch, epoch, step_t):
        if self.progress.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a hard kill: no handler, no flush
        return original(self, batch, epoch, step_t)
    T.Trainer._step = step_then_maybe_die
    train(load_config("digits-teacher", sys.argv[3:] + [f"out={sys.argv[1]}"]), echo=lambda m: None)
""")


def test_sigkill_mid_epoch_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    args = ["epochs=3", "data.batch_size=32", "checkpoint_every=7", "deterministic=true", *FAST]
    steps_per_epoch = 1258 // 32  # 39
    kill_at = steps_per_epoch + 17  # inside epoch 2; the last checkpoint before it is at step 49
    started = time.perf_counter()
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "killed"), str(kill_at), *args],
                            capture_output=True, text=True, timeout=300)
    killed_process_seconds = time.perf_counter() - started
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt = read_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert ckpt["progress"]["epoch"] == 1 and 0 < ckpt["progress"]["batch"] < steps_per_epoch  # mid-epoch
    # the first sitting's wall time travels in the checkpoint; it cannot exceed the killed process's lifetime
    first_sitting = ckpt["progress"]["wall_seconds"]
    assert 0 < first_sitting < killed_process_seconds
    resumed = run_cli("train", "digits-teacher", *args, f"out={tmp_path / 'killed'}", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr
    train(load_config("digits-teacher", [*args, f"out={tmp_path / 'straight'}"]), echo=lambda m: None)
    a = read_checkpoint(tmp_path / "killed" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"


def test_summary_records_the_fit_on_the_unaugmented_training_images(teacher_dir):
    from kdforge.data import load_data
    from kdforge.engine.checkpoint import load_into, load_weights
    from kdforge.engine.models import build_model

    summary = json.loads((teacher_dir / "summary.json").read_text())
    cfg = digits("digits-teacher", teacher_dir)
    data = load_data(cfg.data)
    model = build_model("cnn8", data.num_classes, data.in_channels)
    state, _ = load_weights(teacher_dir / "checkpoint.pt")
    load_into(model, state, "teacher")
    model.eval()
    x = (data.train.images.float() / 255 - torch.tensor(data.train.mean).view(1, -1, 1, 1)) / \
        torch.tensor(data.train.std).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = 100.0 * (model(x).argmax(1) == data.train.labels).double().mean().item()
    assert summary["train_top1"] == pytest.approx(expected, abs=1e-6)
    assert summary["train_loss"] > 0


def test_a_run_resumes_only_with_its_own_trained_settings_but_any_run_settings(teacher_dir, tmp_path):
    from kdforge.config import trained_settings

    with pytest.raises(UserError, match=r"trained with other settings: optim.lr: 0.05 -> 0.2; resume with its own"):
        train(digits("digits-teacher", teacher_dir, "epochs=4", "optim.lr=0.2"), resume=True, echo=lambda m: None)
    # the run section (device, threads, logging, the folder's name) may change between sittings
    summary = train(digits("digits-teacher", teacher_dir, "epochs=4", "device=cpu", "threads=2", "log_every=7",
                           "tensorboard=false"), resume=True, echo=lambda m: None)
    assert summary["epochs"] == 4
    sections = trained_settings(digits("digits-teacher", tmp_path))
    assert {"optim", "data", "seed", "method", "epochs"} <= set(sections)
    assert not {"out", "device", "threads", "progress", "log_every", "checkpoint_every"} & set(sections)


def test_the_summary_records_every_method_argument_the_run_trained_with_defaults_included(teacher_dir, tmp_path):
    summary = train(digits("digits-student", tmp_path, "method=kd", f"teacher_checkpoint={teacher_dir}", "epochs=1",
                           "method_args.temperature=2"), echo=lambda m: None)
    assert summary["config"]["method_args"] == {"temperature": 2}  # as given

    # KD's documented defaults (Hinton et al.'s weights as the CIFAR grid runs them) beside the given temperature
    assert summary["method_settings"] == {"temperature": 2, "ce_weight": 0.1, "kd_weight": 0.9, "logit_std": False}


def test_the_summary_names_the_teacher_by_its_weights(teacher_dir, tmp_path):
    def kd_from(teacher, out, *extra):
        return train(digits("digits-student", tmp_path / out, "method=kd", f"teacher_checkpoint={teacher}", "epochs=1",
                            *extra), echo=lambda m: None)["teacher_weights_key"]

    other_teacher = tmp_path / "other-teacher"  # the same config, trained shorter: other weights
    train(digits("digits-teacher", other_teacher, "epochs=1"), echo=lambda m: None)
    key = kd_from(teacher_dir, "a")
    assert key and kd_from(teacher_dir, "b", "seed=1") == key  # another student, the same teacher
    assert kd_from(other_teacher, "c") != key
    ce = train(digits("digits-student", tmp_path / "ce", "epochs=1"), echo=lambda m: None)
    assert ce["teacher_weights_key"] is None


def test_a_network_compiled_in_place_fires_the_hooks_an_earlier_compile_of_its_class_lacked():
    from kdforge.engine.compilation import compile_in_place
    from kdforge.models.taps import FeatureTaps

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.head(self.body(x).relu())

    x = torch.randn(2, 4)
    first = Net()
    compile_in_place([first])
    first(x)  # compiled without any hook
    second = Net()
    taps = FeatureTaps(second, {"embedding": "body"})
    compile_in_place([second])
    second(x)
    # the hook's output is the body's output, as an eager forward computes it
    assert taps.outputs["embedding"] is not None
    assert torch.allclose(taps.outputs["embedding"], second.body(x))


def test_two_compiled_runs_in_one_process_each_read_their_own_features(teacher_dir, tmp_path):
    # as a suite's rows or a sweep's cells run: ckd reads the student's logits alone, crd then taps its embedding; had
    # crd reused ckd's compiled student, its embedding hook would never fire and it would stop on a missing feature
    for method in ("ckd", "crd"):
        summary = train(digits("digits-student", tmp_path / method, f"method={method}", "epochs=1", "compile=true",
                               "amp=false", f"teacher_checkpoint={teacher_dir}"), echo=lambda m: None)
        assert summary["compiled"] and math.isfinite(summary["top1_last"])
