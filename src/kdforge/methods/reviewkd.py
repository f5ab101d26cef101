"""`reviewkd`: knowledge review (Chen et al., CVPR 2021), as mdistiller runs it.

The student's stage features and pooled embedding are fused from the deepest to the shallowest by attention-based
fusion (ABF) modules: each maps its level to a middle width, mixes in the upsampled result of the deeper level with
two learned spatial attention maps, and a 3x3 convolution produces that level's prediction of the teacher's
feature. The hierarchical context loss (HCL) compares each prediction with the teacher's pre-activation feature at
full resolution and pooled to 4x4, 2x2 and 1x1 (weights 1, 1/2, 1/4, 1/8, normalised), summed over the levels.
CE 1, weight 1 (5 for resnet32x4 -> resnet8x4, configs/cifar100/reviewkd.yaml), warm-up 20 epochs, middle width
min(512, the student's embedding width) (mdistiller/engine/cfg.py CFG.REVIEWKD). Stages of models with different
stage counts are paired at the same relative depth; a teacher stage that ends in a functional ReLU has no
pre-activation to read and gives its output (see `kdforge.models.taps.PreActivation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.features import pair_stages, require_feature_maps, stage_shapes
from kdforge.models import embedding_dim, model_info


def hcl_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over levels of (mse + sum_l 2^-k mse of both pooled to l x l, for l in 4, 2, 1 below the size) / (1 +
    sum 2^-k)."""
    total = student_features[0].new_zeros((), dtype=torch.float32)
    for fs, ft in zip(student_features, teacher_features):
        fs, ft = fs.float(), ft.float()
        level, weight, norm = F.mse_loss(fs, ft), 1.0, 1.0
        for size in (4, 2, 1):
            if size >= fs.shape[2]:
                continue
            weight /= 2.0
            level = level + weight * F.mse_loss(F.adaptive_avg_pool2d(fs, size), F.adaptive_avg_pool2d(ft, size))
            norm += weight
        total = total + level / norm
    return total


class ABF(nn.Module):
    """Attention-based fusion of one level with the (upsampled) fused result of the level below it."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x, residual=None, out_size: int | None = None):
        x = self.conv1(x)
        if self.att_conv is not None:
            residual = F.interpolate(residual, x.shape[-2:], mode="nearest")
            attention = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * attention[:, 0:1] + residual * attention[:, 1:2]
        if out_size is not None and x.shape[-1] != out_size:
            x = F.interpolate(x, (out_size, out_size), mode="nearest")
        return self.conv2(x), x


@dataclass
class ReviewKDConfig:
    ce_weight: float = 1.0
    reviewkd_weight: float = 1.0
    warmup_epochs: float = 20.0
    max_mid_channels: int = 512

    def __post_init__(self):
        if min(self.ce_weight, self.reviewkd_weight, self.warmup_epochs) < 0 or self.max_mid_channels < 1:
            raise ConfigError("method_args: weights and warmup_epochs must be >= 0, max_mid_channels >= 1")


class ReviewKD(Method):
    Config = ReviewKDConfig
    needs_teacher = True
    student_taps = ("stages", "embedding")
    teacher_taps = ("preact_stages", "embedding")
    description = "knowledge review: attention-based fusion of the student's levels, hierarchical context loss"

    def __init__(self, cfg: ReviewKDConfig, ctx):
        super().__init__(cfg, ctx)
        s_shapes, t_shapes = stage_shapes(ctx.student, ctx.input_shape), stage_shapes(ctx.teacher, ctx.input_shape)
        require_feature_maps(s_shapes, "student", "reviewkd")
        require_feature_maps(t_shapes, "teacher", "reviewkd")
        self.pairs = pair_stages(len(model_info(ctx.student).stages), len(model_info(ctx.teacher).stages))
        s_dim, t_dim = embedding_dim(ctx.student), embedding_dim(ctx.teacher)
        # levels, shallow to deep: the paired stages, then the pooled embedding as a 1x1 map
        ins = [s_shapes[i][0] for i, _ in self.pairs] + [s_dim]
        outs = [t_shapes[j][0] for _, j in self.pairs] + [t_dim]
        self.out_sizes = [t_shapes[j][1] for _, j in self.pairs] + [1]
        mid = min(cfg.max_mid_channels, s_dim)
        # deepest first, as the fusion runs
        self.abfs = nn.ModuleList(ABF(ins[k], mid, outs[k], fuse=k < len(ins) - 1) for k in reversed(range(len(ins))))

    def modules_to_compile(self):
        # the fusion modules cost more per step than the resnet8 student itself (their 3x3 convolutions run at the
        # teacher's widths and full resolution), so a compiled run compiles them too
        return list(self.abfs)

    def forward(self, batch, student, teacher, state):
        c = self.cfg
        s_levels = [student.features[f"stage{i}"].float() for i, _ in self.pairs]
        s_levels.append(student.features["embedding"].float().flatten(1)[:, :, None, None])
        t_levels = [teacher.features[f"preact{j}"].float() for _, j in self.pairs]
        t_levels.append(teacher.features["embedding"].float().flatten(1)[:, :, None, None])
        predictions, residual = [], None
        for abf, x, size in zip(self.abfs, reversed(s_levels), reversed(self.out_sizes)):
            prediction, residual = abf(x, residual, size)
            predictions.insert(0, prediction)
        ramp = min((state.epoch + 1) / c.warmup_epochs, 1.0) if c.warmup_epochs > 0 else 1.0
        return {"ce": c.ce_weight * self.cross_entropy(student.logits, batch.target),
                "reviewkd": c.reviewkd_weight * ramp * hcl_loss(predictions, t_levels)}
