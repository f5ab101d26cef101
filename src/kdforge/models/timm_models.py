"""timm models by name (`timm:convnext_atto`, `timm:vit_tiny_patch16_224`, any name `timm.list_models()` gives),
randomly initialised: weights come from a local file (`teacher_checkpoint=`, `init_checkpoint=`: a kdforge run, a
timm checkpoint or `.safetensors`), never from a hub. Stages are timm's own `feature_info` modules and the embedding
is the input of the classifier head (timm's `forward_head(pre_logits=True)`), read through hooks like every zoo
model's. Transformers' stages are token sequences, not feature maps: feature-map methods say they do not apply."""

from __future__ import annotations

import torch.nn as nn

from kdforge.errors import ConfigError
from kdforge.models.base import declare

PREFIX = "timm:"


def is_timm(name: str) -> bool:
    return str(name).startswith(PREFIX)


def timm_model(name: str, num_classes: int, in_channels: int = 3, image_size: int | None = None) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"model {name!r} needs timm: pip install 'kdforge[timm]'") from None
    arch = name[len(PREFIX):]
    if arch not in timm.list_models():
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:5]
        raise ConfigError(f"timm has no model {arch!r}" + (f"; close names: {', '.join(close)}" if close else "") +
                          "; timm.list_models('*pattern*') lists them")
    kwargs = {"pretrained": False, "num_classes": num_classes, "in_chans": in_channels}
    try:  # transformers take the input size (their position embeddings depend on it); CNNs do not
        model = timm.create_model(arch, **kwargs, **({"img_size": image_size} if image_size else {}))
    except TypeError:
        model = timm.create_model(arch, **kwargs)
    classifier = model.pretrained_cfg.get("classifier") or "head"
    if isinstance(classifier, (list, tuple)):
        classifier = classifier[0]
    stages = tuple(info["module"] for info in getattr(model, "feature_info", []) if info.get("module"))
    return declare(model, stages, embedding=f"{classifier}:input", classifier=classifier)
