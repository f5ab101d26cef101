"""Incremental (accuracy by class group) and few-shot (nearest-centroid episodes) protocols."""

import pytest
import torch

from kdforge.errors import ConfigError
from kdforge.protocols import fewshot_episodes, group_accuracy, parse_groups

from conftest import run_cli


def test_group_accuracy_by_hand():
    labels = torch.tensor([0, 0, 1, 2, 2, 3])
    predicted = torch.tensor([0, 1, 1, 2, 0, 3])  # old {0,1}: 2 of 3 right; new {2,3}: 2 of 3 right
    logits = torch.nn.functional.one_hot(predicted, 4).float()
    got = group_accuracy(logits, labels, {"old": [0, 1], "new": [2, 3], "all": [0, 1, 2, 3]})
    assert got == pytest.approx({"old": 200 / 3, "new": 200 / 3, "all": 400 / 6})


def test_parse_groups():
    assert parse_groups("old=0-4,new=5-9") == {"old": [0, 1, 2, 3, 4], "new": [5, 6, 7, 8, 9]}
    assert parse_groups("a=1,3;b=2") == {"a": [1, 3], "b": [2]}
    with pytest.raises(ConfigError):
        parse_groups("0-4")


def test_fewshot_separable_clusters_are_solved_and_noise_is_at_chance():
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(8)[:6] * 10
    labels = torch.arange(6).repeat_interleave(30)
    tight = centres[labels] + 0.1 * torch.randn(180, 8, generator=gen)
    result = fewshot_episodes(tight, labels, way=5, shot=1, queries=5, episodes=50)
    assert result["mean"] == 100.0 and result["ci95"] == 0.0
    noise = torch.randn(180, 8, generator=gen)
    chance = fewshot_episodes(noise, labels, way=5, shot=1, queries=5, episodes=400)
    assert abs(chance["mean"] - 20.0) < 3 * chance["ci95"] + 1 and chance["ci95"] > 0
    with pytest.raises(ConfigError, match="classes"):
        fewshot_episodes(tight, labels, way=7)
    with pytest.raises(ConfigError, match="shot"):
        fewshot_episodes(tight, labels, way=5, shot=20, queries=15)


def test_eval_groups_and_fewshot_commands(tmp_path):
    from kdforge.config import load_config
    from kdforge.engine.pipeline import train

    train(load_config("digits-teacher", [f"out={tmp_path / 't'}", "epochs=2", "data.classes=[0,1,2,3,4]",
                                         "threads=1", "tensorboard=false", "progress=false"]), echo=lambda m: None)
    shots = run_cli("fewshot", str(tmp_path / "t"), "--dataset", "digits", "--classes", "5,6,7,8,9",
                    "--episodes", "50")
    assert shots.returncode == 0, shots.stderr
    lines = shots.stdout.strip().splitlines()
    assert len(lines) == 2 and '"shot": 1' in lines[0] and '"ci95"' in lines[1]
    grouped = run_cli("eval", str(tmp_path / "t"), "--dataset", "digits", "--classes", "0,1,2,3,4",
                      "--groups", "low=0-1,high=2-4")
    assert grouped.returncode == 0 and '"top1_low"' in grouped.stdout, grouped.stderr
    bad = run_cli("fewshot", str(tmp_path / "t"), "--dataset", "digits", "--classes", "5,6")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
