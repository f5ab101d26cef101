"""The shape shared by the feature-map baselines (NST, SP, VID, KDSVD, OFD): CE plus one weighted feature term
over the teacher's and the student's stage outputs, paired at the same relative depth."""

from __future__ import annotations

from kdforge.methods.base import Method
from kdforge.methods.features import pair_stages, require_feature_maps, stage_shapes
from kdforge.models import model_info


class StagePairs(Method):
    """Builds the stage pairs and their (C, H, W) shapes; a subclass sets `term` (its loss term's name, whose
    weight is the config's `<term>_weight`) and computes it in `feature_loss` from the paired stage features."""

    term = ""

    needs_teacher = True
    student_taps = ("stages",)
    teacher_taps = ("stages",)

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        name = self.term
        self.s_shapes = stage_shapes(ctx.student, ctx.input_shape)
        self.t_shapes = stage_shapes(ctx.teacher, ctx.input_shape)
        require_feature_maps(self.s_shapes, "student", name)
        require_feature_maps(self.t_shapes, "teacher", name)
        self.pairs = pair_stages(len(model_info(ctx.student).stages), len(model_info(ctx.teacher).stages))

    def stage_features(self, student, teacher) -> tuple[list, list]:
        return ([student.features[f"stage{i}"].float() for i, _ in self.pairs],
                [teacher.features[f"stage{j}"].float() for _, j in self.pairs])

    def feature_loss(self, student_features: list, teacher_features: list):
        raise NotImplementedError

    def forward(self, batch, student, teacher, state):
        fs, ft = self.stage_features(student, teacher)
        weight = getattr(self.cfg, f"{self.term}_weight")
        return {"ce": self.cfg.ce_weight * self.cross_entropy(student.logits, batch.target),
                self.term: weight * self.feature_loss(fs, ft)}
