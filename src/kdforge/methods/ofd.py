"""`ofd`: overhaul of feature distillation (Heo et al., ICCV 2019), as mdistiller runs it.

Each student stage's pre-activation feature goes through a 1x1-conv + BN connector to the teacher's width and is
pulled toward the teacher's pre-activation feature (pooled to the student's size) by a partial L2 that ignores what
the teacher's ReLU would discard: where the teacher is below its margin, only a student above the margin is
penalised (toward the margin). The margin of each teacher channel is the expected value of its pre-activation
below zero, E[x | x < 0] for x ~ N(beta, gamma^2) read from the BatchNorm before the ReLU (-3 gamma where that
tail holds under 0.1 %). Deeper stages weigh more (1 / 2^(stages - 1 - k)). CE 1, weight 0.001
(mdistiller/engine/cfg.py CFG.OFD). For pre-activation teachers (WRN) the pre-ReLU feature of a stage is the
output of the BatchNorm that reads it, as in the official code; a teacher stage with no BatchNorm before a ReLU
makes OFD not applicable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdforge.errors import ConfigError, NotApplicableError
from kdforge.methods._feature_method import StagePairs
from kdforge.models import model_info


def ofd_margin(gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Per channel E[x | x < 0] for x ~ N(beta, |gamma|^2), or -3 |gamma| where P(x < 0) <= 0.001."""
    s, m = gamma.detach().abs().double(), beta.detach().double()
    tail = torch.special.ndtr(-m / s)
    expected = -s * torch.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi) / tail.clamp_min(1e-300) + m
    return torch.where(tail > 0.001, expected, -3 * s).float()


def ofd_partial_l2(student: torch.Tensor, teacher: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """mdistiller's feat_loss: the partial L2 averaged over the batch and summed over channels and positions."""
    margin = margin.view(1, -1, 1, 1).to(student)
    loss = ((student - margin) ** 2 * ((student > margin) & (teacher <= margin))
            + (student - teacher) ** 2 * ((student > teacher) & (teacher > margin) & (teacher <= 0))
            + (student - teacher) ** 2 * (teacher > 0))
    return loss.abs().mean(dim=0).sum()


@torch.no_grad()
def pre_relu_points(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[nn.BatchNorm2d, str] | None]:
    """For each declared stage: (the BatchNorm before its ReLU, the tap of its pre-ReLU feature).

    - the stage's last block ends in a ReLU run after its last BatchNorm (ResNet blocks): that BatchNorm, and the
      stage's pre-activation (`PATH:preact`, the final ReLU's input);
    - the stage's output is its last BatchNorm's output (VGG here): that BatchNorm, and the stage's output;
    - the stage's output is a sum that the next BatchNorm reads before a ReLU (pre-activation WRN blocks): that
      next BatchNorm, and its output, as the official code takes for pre-activation networks;
    - else None."""
    was_training = model.training
    model.eval()
    events, stage_out = [], {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.BatchNorm2d, nn.ReLU)):
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: events.append((name, m, i[0], o))))
    paths = model_info(model).stages

    def stage_hook(path: str):
        def hook(module, inputs, output):  # returns None: the output is left as it is
            events.append((path, module, None, output))
            stage_out[path] = output
        return hook

    for path in paths:
        handles.append(model.get_submodule(path).register_forward_hook(stage_hook(path)))
    try:
        model(torch.zeros(2, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    found = []
    for path in paths:
        end = next(k for k, e in enumerate(events) if e[0] == path and e[2] is None)
        inside = [e for e in events[:end] if e[0].startswith(path + ".")]
        norms = [e for e in inside if isinstance(e[1], nn.BatchNorm2d)]
        last_out = inside[-1][3] if inside else None
        if norms and inside and inside[-1] is not norms[-1] and isinstance(inside[-1][1], nn.ReLU) \
                and last_out is stage_out[path]:
            found.append((norms[-1][1], f"{path}:preact"))
        elif norms and inside[-1] is norms[-1] and last_out is stage_out[path]:
            found.append((norms[-1][1], path))
        else:
            reader = next((e for e in events[end + 1:] if isinstance(e[1], nn.BatchNorm2d)
                           and e[2] is stage_out[path]), None)
            found.append((reader[1], reader[0]) if reader is not None else None)
    return found


def _connector(s: int, t: int) -> nn.Sequential:
    conv, bn = nn.Conv2d(s, t, 1, bias=False), nn.BatchNorm2d(t)
    nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / t))  # the official init: fan-out of a 1x1 convolution
    return nn.Sequential(conv, bn)


@dataclass
class OFDConfig:
    ce_weight: float = 1.0
    ofd_weight: float = 0.001

    def __post_init__(self):
        if self.ce_weight < 0 or self.ofd_weight < 0:
            raise ConfigError("method_args: ce_weight and ofd_weight must be >= 0")


class OFD(StagePairs):
    Config = OFDConfig
    description = "overhaul of feature distillation: connectors, margins from the teacher's BatchNorm, partial L2"
    term = "ofd"
    student_taps = ("preact_stages",)

    def __init__(self, cfg: OFDConfig, ctx):
        super().__init__(cfg, ctx)
        points = pre_relu_points(ctx.teacher, ctx.input_shape)
        missing = [model_info(ctx.teacher).stages[j] for _, j in self.pairs if points[j] is None]
        if missing:
            raise NotApplicableError(f"ofd reads each teacher stage's margin from the BatchNorm before its ReLU; "
                                     f"{type(ctx.teacher).__name__}'s stages {missing} have none")
        self.teacher_taps = tuple(f"ofd{k}={points[j][1]}" for k, (_, j) in enumerate(self.pairs))
        for k, (_, j) in enumerate(self.pairs):
            norm = points[j][0]
            self.register_buffer(f"margin{k}", ofd_margin(norm.weight, norm.bias))
        self.connectors = nn.ModuleList(_connector(self.s_shapes[i][0], self.t_shapes[j][0]) for i, j in self.pairs)

    def stage_features(self, student, teacher) -> tuple[list, list]:
        return ([student.features[f"preact{i}"].float() for i, _ in self.pairs],
                [teacher.features[f"ofd{k}"].float() for k in range(len(self.pairs))])

    def feature_loss(self, fs, ft):
        total, n = fs[0].new_zeros(()), len(fs)
        for k, (connector, s, t) in enumerate(zip(self.connectors, fs, ft)):
            s = connector(s)
            t = F.adaptive_avg_pool2d(t, s.shape[-2:]).detach()
            total = total + ofd_partial_l2(s, t, getattr(self, f"margin{k}")) / 2 ** (n - k - 1)
        return total
