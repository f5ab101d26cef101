"""The teacher-output cache: replayed epochs train exactly as computed ones, a foreign cache is ignored,
feature-map methods are left alone."""

import json
from pathlib import Path

import pytest
import torch

from kdforge.config import load_config
from kdforge.engine.checkpoint import read_checkpoint
from kdforge.engine.pipeline import train

FAST = ["epochs=2", "threads=1", "tensorboard=false", "progress=false", "method=kd"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache") / "teacher"
    train(load_config("digits-teacher", [f"out={folder}", "epochs=2", "threads=1", "progress=false"]),
          echo=lambda m: None)
    return folder


def run(tmp_path, name, teacher, *extra, logs=None):
    summary = train(load_config("digits-student", [f"out={tmp_path / name}", f"teacher_checkpoint={teacher}",
                                                   *FAST, *extra]), echo=(logs.append if logs is not None else
                                                                          (lambda m: None)))
    return summary, read_checkpoint(tmp_path / name / "checkpoint.pt")["model"]


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_float32_cache_trains_bit_identically_and_the_second_run_replays(tmp_path, teacher, device):
    # on CUDA, bit-identical runs need the deterministic kernels; float32 arithmetic, as the test's name says (amp=auto
    # would pick bf16 on an AMX CPU or a recent GPU, where the plain run's bf16 teacher logits and the cache's float32
    # copy of them round the loss differently)
    on = [f"device={device.type}", "deterministic=true", "amp=false"]
    _, plain = run(tmp_path, "plain", teacher, *on)
    cold_summary, cold = run(tmp_path, "cold", teacher, *on, "teacher_cache=true", "teacher_cache_dtype=float32")
    warm_summary, warm = run(tmp_path, "warm", teacher, *on, "teacher_cache=true", "teacher_cache_dtype=float32")
    assert same(plain, cold) and same(cold, warm)
    assert cold_summary["teacher_cache"]["epochs_computed"] == 2
    assert warm_summary["teacher_cache"] | {"folder": None, "bytes": None} == {
        "epochs_replayed": 2, "epochs_computed": 0, "hit_rate": 1.0, "folder": None, "bytes": None}
    assert warm_summary["teacher_cache"]["bytes"] > 0


def test_in_bf16_autocast_a_replayed_run_trains_exactly_as_the_recording_run(tmp_path, teacher, device):
    """The cache is exact with respect to what the student trains on in bf16 too: the recording run's method reads
    the stored values, so the replaying run, reading the same values, reaches the same weights."""
    on = [f"device={device.type}", "deterministic=true", "amp=true", "teacher_cache=true", "seed=5"]
    _, cold = run(tmp_path, "cold", teacher, *on)
    summary, warm = run(tmp_path, "warm", teacher, *on)
    assert summary["amp"] is True and summary["teacher_cache"]["hit_rate"] == 1.0 and same(cold, warm)


def test_float16_cache_cold_and_warm_runs_agree(tmp_path, teacher):
    _, cold = run(tmp_path, "cold", teacher, "teacher_cache=true", "seed=3")
    summary, warm = run(tmp_path, "warm", teacher, "teacher_cache=true", "seed=3")
    assert same(cold, warm) and summary["teacher_cache"]["hit_rate"] == 1.0
    # another seed sees other views: nothing to replay
    other, _ = run(tmp_path, "other", teacher, "teacher_cache=true", "seed=4")
    assert other["teacher_cache"]["epochs_replayed"] == 0


def test_a_cache_recorded_under_another_key_is_ignored(tmp_path, teacher):
    first, _ = run(tmp_path, "a", teacher, "teacher_cache=true", "seed=5")
    folder = first["teacher_cache"]["folder"]
    from pathlib import Path

    for marker in Path(folder).glob("*.done"):
        meta = json.loads(marker.read_text())
        marker.write_text(json.dumps({**meta, "key": "somebody-else"}))
    logs = []
    again, _ = run(tmp_path, "b", teacher, "teacher_cache=true", "seed=5", logs=logs)
    assert again["teacher_cache"]["epochs_replayed"] == 0
    assert any("another key" in line for line in logs)


def test_feature_map_methods_do_not_use_the_cache(tmp_path):
    folder = tmp_path / "t"
    fast = ["threads=1", "progress=false", "tensorboard=false", "epochs=1"]
    train(load_config("digits-teacher", [f"out={folder}", *fast]), echo=lambda m: None)
    logs = []
    summary = train(load_config("digits-teacher", [f"out={tmp_path / 's'}", "method=at", f"teacher_checkpoint={folder}",
                                                   "teacher_cache=true", *fast]), echo=logs.append)
    assert summary["teacher_cache"] is None and any("feature maps" in line for line in logs)


def test_a_logit_method_and_an_embedding_method_replay_one_recording(tmp_path, teacher):
    # kd reads the logits, rkd the embedding too: one recording serves both, whichever runs first
    kd, _ = run(tmp_path, "kd", teacher, "teacher_cache=true", "seed=7")
    rkd, _ = run(tmp_path, "rkd", teacher, "teacher_cache=true", "seed=7", "method=rkd")
    assert kd["teacher_cache"]["epochs_computed"] == 2
    assert rkd["teacher_cache"]["epochs_replayed"] == 2 and rkd["teacher_cache"]["folder"] == kd["teacher_cache"]["folder"]
    stored = json.loads(next(iter(sorted(Path(kd["teacher_cache"]["folder"]).glob("*.done")))).read_text())["tensors"]
    assert sorted(stored) == ["embedding", "logits"]
    # replayed, rkd trains exactly as when it computes its own teacher outputs (float32: nothing rounded)
    _, computed = run(tmp_path, "rkd-own", teacher, "teacher_cache=true", "seed=8", "method=rkd",
                      "teacher_cache_dtype=float32")
    _, replayed = run(tmp_path, "rkd-again", teacher, "teacher_cache=true", "seed=8", "method=rkd",
                      "teacher_cache_dtype=float32")
    assert same(computed, replayed)
    # and kd replays a recording rkd made
    first, _ = run(tmp_path, "rkd-first", teacher, "teacher_cache=true", "seed=9", "method=rkd")
    then, _ = run(tmp_path, "kd-then", teacher, "teacher_cache=true", "seed=9")
    assert first["teacher_cache"]["epochs_computed"] == 2 and then["teacher_cache"]["epochs_replayed"] == 2
