"""RKD: relations from a teacher of the same or of other classes."""

import pytest
import torch

from kdforge.config import load_config
from kdforge.engine.pipeline import train
from kdforge.errors import ConfigError
from kdforge.losses import rkd_loss


def test_rkd_is_zero_for_the_teachers_own_relations_at_any_scale():
    t = torch.randn(6, 8)
    assert rkd_loss(t * 3.0, t).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_loss(torch.randn(6, 4), t).item() > 0


def test_rkd_distils_from_a_teacher_trained_on_other_classes(tmp_path):
    fast = ["threads=1", "tensorboard=false", "log_every=10"]
    train(load_config("digits-teacher", [f"out={tmp_path / 't'}", "epochs=3", "data.classes=[0,1,2,3,4,5]", *fast]),
          echo=lambda m: None)
    summary = train(load_config("digits-student", [f"out={tmp_path / 's'}", "epochs=3", "method=rkd",
                                                   f"teacher_checkpoint={tmp_path / 't'}", "data.classes=[4,5,6,7,8,9]",
                                                   *fast]), echo=lambda m: None)
    assert summary["teacher_top1"] is None  # the teacher's head does not cover the student's classes
    assert summary["top1_last"] > 40


def test_output_distillation_refuses_a_teacher_of_other_classes_even_with_the_same_count(tmp_path):

    fast = ["threads=1", "tensorboard=false"]
    train(load_config("digits-teacher", [f"out={tmp_path / 't'}", "epochs=1", "data.classes=[0,1,2]", *fast]),
          echo=lambda m: None)
    with pytest.raises(ConfigError, match="trained on classes"):
        train(load_config("digits-student", [f"out={tmp_path / 's'}", "method=kd", f"teacher_checkpoint={tmp_path / 't'}",
                                             "data.classes=[7,8,9]", *fast]))
