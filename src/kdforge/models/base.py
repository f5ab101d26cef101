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


def model_info(model: nn.Module) -> ModelInfo:
    info = getattr(model, "kd_info", None)
    if info is None:
        raise AttributeError(
            f"{type(model).__name__} declares no kd_info; wrap it with kdforge.models.declare(model, stages, embedding)"
        )
    return info
