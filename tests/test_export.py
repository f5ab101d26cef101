"""kdforge export: the student alone in four formats, each read back and compared with PyTorch on real test
images, with the card that says how to feed it."""

import json

import pytest
import torch

from kdforge.cli import main
from kdforge.config import load_config
from kdforge.engine.pipeline import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(load_config("digits-teacher", [f"out={out}", "epochs=1", "threads=1", "progress=false",
                                         "tensorboard=false"]), echo=lambda m: None)
    return out


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "onnx", "pt2"])
def test_export_round_trip_on_real_test_images(run, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"student.{fmt}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out), "--check", "300"]) == 0
    card = json.loads((tmp_path / f"student.{fmt}.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert card["architecture"] == "cnn8" and card["num_classes"] == 10 and card["input"]["shape"] == [1, 8, 8]
    assert card["test_top1"] == summary["top1_last"] and card["bytes"] == out.stat().st_size > 0
    assert card["check"]["images"] == 300 and card["check"]["max_abs_logit_difference"] < 1e-4
    assert card["check"]["same_top1"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob("*.data"))  # one self-contained file


def test_export_refuses_a_file_that_is_not_a_kdforge_run(tmp_path, capsys):
    plain = tmp_path / "weights.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, plain)
    assert main(["export", str(plain), "--format", "safetensors", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "not a kdforge run" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_the_command_line_offers_every_export_format():
    from kdforge.cli import _parser
    from kdforge.export import FORMATS

    export = next(a for a in _parser()._subparsers._group_actions[0].choices["export"]._actions
                  if a.dest == "format")
    assert tuple(export.choices) == FORMATS  # the parser keeps its own list so that `kdforge --help` skips torch
