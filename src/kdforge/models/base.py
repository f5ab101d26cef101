"""What every zoo model declares so that methods can read its features through hooks.

`stages`: module paths whose outputs are the stage feature maps (one resolution each).
`embedding`: module path whose output is the pooled penultimate embedding (B x d).
`classifier`: module path of the final linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn


@dataclass(frozen=True)
class ModelInfo:
    stages: tuple[str, ...]
    embedding: str
    classifier: str


def declare(model: nn.Module, stages, embedding: str = "flatten", classifier: str = "fc") -> nn.Module:
    model.kd_info = ModelInfo(tuple(stages), embedding, classifier)
    return model


def init_weights(model: nn.Module, linear_std: float | None = None, zero_linear_bias: bool = False) -> None:
    """The zoo's initialisation: Kaiming-normal (fan-out) convs with zero bias, BatchNorm at identity, and
    linear layers either PyTorch's default or normal(0, linear_std) (with zero bias where asked)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0, linear_std)
            if linear_std is not None or zero_linear_bias:
                nn.init.zeros_(m.bias)


def model_info(model: nn.Module) -> ModelInfo:
    info = getattr(model, "kd_info", None)
    if info is None:
        raise AttributeError(
            f"{type(model).__name__} declares no kd_info; wrap it with kdforge.models.declare(model, stages, embedding)"
        )
    return info
