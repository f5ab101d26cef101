"""torchrun with 2 CPU processes (gloo) against a single process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

from kdforge.engine.checkpoint import read_checkpoint

# device=cpu: these are the gloo tests, also on a machine with fewer GPUs than processes
COMMON = ["digits-student", "method=ce", "epochs=2", "data.batch_size=64", "deterministic=true", "threads=1",
          "tensorboard=false", "log_every=5", "device=cpu"]


def launcher(logs, nproc=2):
    """torchrun's command line; its per-run log folder goes under the test's folder (by default torchrun leaves
    one in the system's temporary folder on every launch)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            f"--log-dir={logs}"]


def torchrun(*args, logs, nproc=2):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([*launcher(logs, nproc), "-m", "kdforge", "train", *args], capture_output=True, text=True,
                          timeout=600, env=env)


def single(*args):
    return subprocess.run([sys.executable, "-m", "kdforge", "train", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # float32 on every machine: under bf16 (amp=auto on an AMX CPU) two half-batch gradients round otherwise than
    # the full batch's, beyond the tolerance below, and this compares the data-parallel arithmetic, not bf16's
    ddp = torchrun(*COMMON, "amp=false", f"out={tmp_path / 'ddp'}", logs=tmp_path / "logs")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = single(*COMMON, "amp=false", f"out={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = read_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["model"], read_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]
    # mlp8 has no BatchNorm: two half-batch gradients averaged equal the full-batch gradient up to rounding
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4, rtol=1e-4), key
    s_ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    s_one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert s_ddp["world_size"] == 2 and s_one["world_size"] == 1
    assert abs(s_ddp["top1_last"] - s_one["top1_last"]) < 0.5
    assert not (tmp_path / "ddp" / "summary.json.tmp").exists()


@pytest.mark.slow
def test_contrastive_and_bank_methods_run_under_two_processes(tmp_path):
    teacher = single("digits-teacher", "epochs=1", "threads=1", "tensorboard=false", f"out={tmp_path / 't'}")
    assert teacher.returncode == 0, teacher.stderr[-2000:]
    for method in ("ckd", "crd"):
        run = torchrun("digits-student", f"method={method}", "epochs=1", "data.batch_size=64", "threads=1", "device=cpu",
                       "tensorboard=false", f"teacher_checkpoint={tmp_path / 't'}", f"out={tmp_path / method}", logs=tmp_path / "logs")
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads((tmp_path / method / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["top1_last"] > 10


@pytest.mark.slow
def test_in_context_banks_and_the_two_stage_pipeline_run_under_two_processes(tmp_path):
    teacher = single("digits-teacher", "epochs=1", "threads=1", "tensorboard=false", f"out={tmp_path / 't'}")
    assert teacher.returncode == 0, teacher.stderr[-2000:]
    runs = {"ickd-online": ["method=ickd_online", "method_args.warmup_epochs=1", "epochs=2"],
            "ickd": ["method=ickd", "epochs=1"],
            "refilled": ["method=refilled", "data.val_per_class=10", "epochs=2"]}
    for name, args in runs.items():
        run = torchrun("digits-student", *args, "data.batch_size=64", "threads=1", "device=cpu", "tensorboard=false",
                       f"teacher_checkpoint={tmp_path / 't'}", f"out={tmp_path / name}", logs=tmp_path / "logs")
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["top1_last"] > 10, name
    # every process wrote the whole global batch into its banks: rank 0's banks saw every visited index
    state = read_checkpoint(tmp_path / "ickd-online" / "checkpoint.pt")["method"]
    assert state["banks.0.filled"].float().mean() > 0.9 and state["banks.1.filled"].float().mean() > 0.9


def test_global_batch_must_divide_over_the_processes():
    from kdforge.engine.distributed import DistInfo, per_rank_batch
    from kdforge.errors import ConfigError

    assert per_rank_batch(64, DistInfo(0, 2, 0)) == 32
    with pytest.raises(ConfigError, match="divide evenly"):
        per_rank_batch(65, DistInfo(1, 2, 1))


def test_more_processes_than_gpus_stop_with_one_line_before_joining(monkeypatch):
    from kdforge.engine.distributed import init_from_env
    from kdforge.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="local rank 1 has no GPU: this machine has 1") as err:
        init_from_env("auto")
    assert "\n" not in str(err.value)


KILL_RANK_SCRIPT = """
import os, signal, sys
from kdforge.engine import trainer as T
from kdforge.cli import main

kill_at = int(sys.argv[2])
original = T.Trainer._step
def step_then_maybe_die(self, batch, epoch, step_t):
    if self.progress.step == kill_at and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGKILL)  # a hard kill of one rank mid-epoch: no handler, no flush
    return original(self, batch, epoch, step_t)
T.Trainer._step = step_then_maybe_die
sys.exit(main(["train", *sys.argv[3:], f"out={sys.argv[1]}"]))
"""


@pytest.mark.slow
def test_a_killed_rank_stops_the_others_on_one_line_and_resume_reaches_the_same_weights(tmp_path):
    import time

    args = [*COMMON, "checkpoint_every=5"]
    whole = torchrun(*args, f"out={tmp_path / 'whole'}", logs=tmp_path / "logs")
    assert whole.returncode == 0, whole.stderr[-3000:]
    script = tmp_path / "kill_rank.py"
    script.write_text(KILL_RANK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    killed = subprocess.run([*launcher(tmp_path / "logs"), str(script), str(tmp_path / "cut"), "12", *args],
                            capture_output=True, text=True, timeout=300, env=env)
    assert killed.returncode != 0 and time.perf_counter() - start < 60
    ours = [line for line in killed.stderr.splitlines() if line.startswith("kdforge:")]
    assert len(ours) == 1 and "another process of this 2-process run died" in ours[0] and "--resume" in ours[0], \
        killed.stderr[-3000:]
    # no traceback from kdforge's own ranks (the launcher's own report of the dead rank follows, as always)
    assert not any(line.startswith("[rank") and "Traceback" in line for line in killed.stderr.splitlines())
    kept = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")  # intact: its checksum verifies
    assert kept["progress"]["step"] == 10  # the last checkpoint before the kill at step 12
    resumed = torchrun(*args, f"out={tmp_path / 'cut'}", "--resume", logs=tmp_path / "logs")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = read_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
