"""Shared pieces of the feature-based methods: stage pairing and shapes from a dummy forward."""

from __future__ import annotations

import torch
import torch.nn as nn

from kdforge.models import FeatureTaps, model_info, standard_taps


def pair_stages(student_count: int, teacher_count: int) -> list[tuple[int, int]]:
    """Student stage i -> the teacher stage at the same relative depth (identity when the counts agree)."""
    if student_count == 1:
        return [(0, teacher_count - 1)]
    return [(i, round(i * (teacher_count - 1) / (student_count - 1))) for i in range(student_count)]


@torch.no_grad()
def stage_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """(C, H, W) of every declared stage output, from one forward pass on a dummy input in eval mode."""
    was_training = model.training
    model.eval()
    taps = FeatureTaps(model, standard_taps(model, ("stages",)))
    try:
        device = next(model.parameters()).device
        model(torch.zeros(2, *input_shape, device=device))
        return [tuple(taps.outputs[f"stage{i}"].shape[1:]) for i in range(len(model_info(model).stages))]
    finally:
        taps.remove()
        model.train(was_training)


def require_feature_maps(shapes: list[tuple[int, ...]], who: str, method: str) -> None:
    from kdforge.errors import NotApplicableError

    if not shapes or any(len(shape) != 3 for shape in shapes):
        raise NotApplicableError(f"{method} needs convolutional stage features (C x H x W); the {who} has "
                          f"{[tuple(s) for s in shapes]}: pick a convolutional {who}")


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two feature maps to the other's spatial size."""
    if a.shape[-2:] == b.shape[-2:]:
        return a, b
    if a.shape[-1] > b.shape[-1]:
        return nn.functional.adaptive_avg_pool2d(a, b.shape[-2:]), b
    return a, nn.functional.adaptive_avg_pool2d(b, a.shape[-2:])
