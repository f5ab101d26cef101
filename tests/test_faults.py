"""The fault battery: bad input answered on one line with exit code 2; preemption and full disks lose nothing."""

import json
import resource
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from kdforge.cli import main
from kdforge.engine.checkpoint import read_checkpoint

from conftest import run_cli
from fault_cases import CASES, torn_files


def test_the_battery_has_twenty_cases_across_every_area():
    assert len(CASES) >= 20
    assert {area for _, area, _, _ in CASES} >= {"config", "cli", "data", "checkpoints", "models", "output"}


@pytest.mark.parametrize("name,area,build,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_exit_2_and_nothing_half_written(name, area, build, needle, tmp_path, capsys):
    args = build(tmp_path)
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("kdforge: error: ") and "Traceback" not in err
    assert needle in err
    run = tmp_path / "run"  # where the train cases write; the inputs beside it may be damaged on purpose
    assert not run.exists() or torn_files(run) == []
    if run.exists() and "non-finite" not in needle:
        assert not (run / "checkpoint.pt").exists() and not (run / "summary.json").exists()


SIGNAL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from kdforge.config import load_config
    from kdforge.engine import trainer as T
    from kdforge.engine.pipeline import train
    from kdforge.errors import TrainingStopped

    # argv: out, [STAGE:]STEP (the step of the run, or of the staged method's stage STAGE), signal, preset, settings
    stage, _, at_step = sys.argv[2].rpartition(":")
    at_step, signum = int(at_step), getattr(signal, sys.argv[3])
    original = T.Trainer._step
    def step(self, batch, epoch, step_t):
        if self.progress.step == at_step and self.cfg.run_dir.name == (stage or self.cfg.run_dir.name):
            os.kill(os.getpid(), signum)  # delivered while this step runs
        return original(self, batch, epoch, step_t)
    T.Trainer._step = step
    try:
        train(load_config(sys.argv[4], sys.argv[5:] + [f"out={sys.argv[1]}"]), echo=lambda m: None)
    except TrainingStopped as exc:
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_code)
""")
ARGS = ["epochs=2", "data.batch_size=32", "deterministic=true", "threads=1", "tensorboard=false", "log_every=5"]


def _weights(folder):
    return read_checkpoint(folder / "checkpoint.pt")["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    assert run_cli("train", "digits-teacher", *ARGS, f"out={out}").returncode == 0
    return _weights(out)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_stop_signal_mid_epoch_checkpoints_after_the_step_and_resumes_bit_identical(signame, tmp_path, uninterrupted):
    out = tmp_path / "run"
    stop_at = 39 + 11  # epoch 2, batch 11
    stopped = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT, str(out), str(stop_at), signame, "digits-teacher",
                              *ARGS],
                             capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 128 + getattr(signal, signame), stopped.stderr[-1500:]
    assert f"stopped by {signame}" in stopped.stderr and "--resume" in stopped.stderr
    progress = read_checkpoint(out / "checkpoint.pt")["progress"]
    assert (progress["epoch"], progress["batch"], progress["step"]) == (1, 12, stop_at + 1)  # the step finished
    resumed = run_cli("train", "digits-teacher", *ARGS, f"out={out}", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    final = _weights(out)
    assert all(torch.equal(final[k], uninterrupted[k]) for k in final)


@pytest.fixture(scope="module")
def refilled_run(tmp_path_factory):
    """A staged method (REFILLED, two stages each resumable in its own sub-folder) with the teacher-output cache,
    on a digits teacher of the first five classes (the incremental setting: the student learns all ten); its
    settings and each stage's weights trained without a stop."""
    teacher = tmp_path_factory.mktemp("teacher")
    assert run_cli("train", "digits-teacher", "epochs=2", "data.classes=[0,1,2,3,4]", "threads=1",
                   "tensorboard=false", f"out={teacher}").returncode == 0
    args = ["epochs=4", "method=refilled", f"teacher_checkpoint={teacher}", "data.val_per_class=10",
            "method_args.budget=equal", "teacher_cache=true", "teacher_cache_dtype=float32",
            *(a for a in ARGS if not a.startswith("epochs="))]
    straight = tmp_path_factory.mktemp("straight")
    assert run_cli("train", "digits-student", *args, f"out={straight}").returncode == 0
    return args, {stage: _weights(straight / stage) for stage in ("stage1", "stage2")}


@pytest.mark.parametrize("stop_at", ["stage1:20", "stage2:1"])
def test_a_staged_method_stopped_in_either_stage_resumes_bit_identical(stop_at, refilled_run, tmp_path):
    refilled_args, uninterrupted_stages = refilled_run
    out = tmp_path / "run"
    stopped = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT, str(out), stop_at, "SIGTERM", "digits-student",
                              *refilled_args], capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-1500:]
    stage = stop_at.split(":")[0]
    assert (out / stage / "checkpoint.pt").exists() and not (out / stage / "summary.json").exists()
    resumed = run_cli("train", "digits-student", *refilled_args, f"out={out}", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    for stage in ("stage1", "stage2"):
        final = _weights(out / stage)
        assert all(torch.equal(final[k], uninterrupted_stages[stage][k]) for k in final)


def test_full_disk_keeps_the_previous_checkpoint_and_stops_with_one_line(tmp_path):
    out = tmp_path / "run"
    stopped = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT, str(out), "20", "SIGTERM", "digits-teacher", *ARGS],
                             capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 128 + signal.SIGTERM
    before = (out / "checkpoint.pt").read_bytes()
    limit = len(before) // 2  # any file larger than this fails to be written, as on a full disk

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, "-m", "kdforge", "train", "digits-teacher", *ARGS, f"out={out}", "--resume"], capture_output=True, text=True, timeout=300,
                            preexec_fn=small_disk)
    assert result.returncode == 2, result.stderr[-1500:]
    last = result.stderr.strip().splitlines()[-1]  # earlier lines are the resumed run's progress
    assert last.startswith("kdforge: error: no space left writing") and "Traceback" not in result.stderr
    assert (out / "checkpoint.pt").read_bytes() == before  # untouched
    assert torn_files(out) == []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line)


def test_two_runs_on_one_folder(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "kdforge", "train", "digits-teacher", "epochs=40", "threads=1",
                              "tensorboard=false", f"out={out}"], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if (out / ".lock").exists() and (out / "config.json").exists():
                break
            import time

            time.sleep(0.05)
        second = run_cli("train", "digits-teacher", "epochs=40", "threads=1", f"out={out}", "--resume")
        assert second.returncode == 2 and "in use by another kdforge run" in second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM
    assert torn_files(out) == []
