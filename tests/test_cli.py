import json

import pytest

from kdforge.cli import main

from conftest import run_cli


def test_list_prints_one_name_per_line(capsys):
    assert main(["list", "methods"]) == 0
    methods = capsys.readouterr().out.split()
    assert {"ce", "kd"} <= set(methods) and methods == sorted(methods)
    assert main(["list", "models"]) == 0
    assert "resnet32x4" in capsys.readouterr().out.splitlines()
    assert main(["list", "datasets"]) == 0
    assert {"cifar10-jpeg", "cifar10", "cifar100", "fashion-mnist", "digits", "imagefolder"} <= set(
        capsys.readouterr().out.split())
    assert main(["list", "presets"]) == 0
    assert "cifar10-cpu-teacher" in capsys.readouterr().out.split()


@pytest.mark.parametrize("args,needle", [
    (["train", "digits-student", "method=kdd"], "unknown method 'kdd': did you mean kd"),
    (["train", "digits-student", "student=resnet9"], "unknown model 'resnet9'"),
    (["train", "digits-student", "data.dataset=cifar1000"], "unknown dataset 'cifar1000'"),
    (["train", "digits-student", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
    (["train", "digits-student", "method=kd"], "needs a teacher"),
    (["train", "digits-student", "method=kd", "teacher_checkpoint=/no/such/file.pt"], "does not exist"),
    (["train", "no-such-preset"], "neither a config file nor a preset"),
    (["train", "digits-student", "method_args.temperature=2"], "unknown config key 'method_args.temperature'"),
    (["train", "digits-student", "data.batch_size=-4"], "batch_size"),
    (["eval", "/no/such/run", "--dataset", "digits"], "does not exist"),
    (["bench", "detection", "--seeds", "-1"], "--seeds must be at least 0"),
    (["bench", "detection", "--seeds", "2", "--only-seeds", "2"], "--only-seeds must be among 0..1"),
])
def test_bad_input_is_one_line_with_exit_code_2(args, needle, capsys, tmp_path):
    code = main([*args, f"out={tmp_path / 'run'}"] if args[0] == "train" else args)
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_subprocess_exit_code_and_debug_traceback(tmp_path):
    result = run_cli("train", "digits-student", "student=resnet9", f"out={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    debug = run_cli("--debug", "train", "digits-student", "student=resnet9", f"out={tmp_path}")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_train_then_eval_reproduces_the_reported_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "digits-student", "epochs=2", f"out={out}", "threads=1", "tensorboard=false"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(out), "--dataset", "digits"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "mlp8" and result["top1"] == pytest.approx(summary["top1_last"], abs=1e-3)
    # the precision asked for: float32 and bf16 are the engine's evaluation of the same weights in each
    import torch

    from kdforge.data import DataConfig, load_data
    from kdforge.engine.models import load_model
    from kdforge.engine.task import evaluate

    data = load_data(DataConfig(dataset="digits", eval_batch_size=512))
    model = load_model(out, "mlp8", data.num_classes, data.in_channels)
    for flag, amp in (("false", False), ("true", True)):
        assert main(["eval", str(out), "--dataset", "digits", "--amp", flag]) == 0
        expected = evaluate(model, data.stream("test", 512, train=False), torch.device("cpu"), amp)["top1"]
        assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(expected, abs=1e-4)  # printed to 4 places


def test_plot_draws_a_png_and_ignores_a_torn_last_record(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "digits-student", "epochs=2", f"out={out}", "threads=1", "tensorboard=false"]) == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"type": "epoch", "epo')  # a record cut by a crash
    png = tmp_path / "curves.png"
    assert main(["plot", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_check_stops_with_one_line_without_cuda():
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would run")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "gpu_check.py"), "--out", "/nonexistent/x.json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no CUDA device" in done.stderr


def test_gpu_check_reads_pytests_closing_tally():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    log = "....F\nFAILED tests/x.py::t - 3 passed\n13 failed, 638 passed, 2 skipped, 67 warnings in 257.53s (0:04:17)\n"
    assert gpu_check.test_counts(log) == {"failed": 13, "passed": 638, "skipped": 2}
    assert gpu_check.test_counts("113 passed, 31 warnings in 164.82s") == {"passed": 113}
    assert gpu_check.test_counts("no tests ran") == {}
