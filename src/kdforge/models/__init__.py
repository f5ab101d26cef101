"""The model zoo: `create_model(name, num_classes)` builds any registered architecture.

Every zoo model declares its stages and its embedding layer (see `kdforge.models.base`), so
feature-based methods read features through hooks (`kdforge.models.taps`) without model surgery.
"""

from __future__ import annotations

import torch.nn as nn

from kdforge.models.base import ModelInfo, declare, model_info
from kdforge.models.mobilenetv1 import mobilenet_v1
from kdforge.models.mobilenetv2 import mobilenetv2
from kdforge.models.resnet_cifar import cifar_resnet, resnet18_cifar, resnet50_cifar
from kdforge.models.shufflenet import shufflenet_v1, shufflenet_v2
from kdforge.models.small import mlp, small_cnn
from kdforge.models.taps import FeatureTaps, ModelOutput, TappedModel, flat_embedding, standard_taps
from kdforge.models.torchvision_models import KNOWN as _TORCHVISION_ARCHS
from kdforge.models.torchvision_models import torchvision_model
from kdforge.models.vgg import vgg
from kdforge.models.wrn import wrn
from kdforge.registry import Registry

MODELS: Registry = Registry("model")

for _depth in (8, 14, 20, 32, 44, 56, 110):
    MODELS.add(f"resnet{_depth}", cifar_resnet(_depth))
MODELS.add("resnet8x4", cifar_resnet(8, wide=True))
# half of resnet8's width: the least capable student of the paper-regime capacity ladder (KR's claim)
MODELS.add("resnet8x0.5", cifar_resnet(8, widths=(8, 8, 16, 32)))
MODELS.add("resnet32x4", cifar_resnet(32, wide=True))
for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    MODELS.add(f"wrn_{_depth}_{_widen}", wrn(_depth, _widen))
for _depth in (8, 11, 13, 16, 19):
    MODELS.add(f"vgg{_depth}", vgg(_depth))
MODELS.add("MobileNetV2", mobilenetv2(0.5))
MODELS.add("MobileNetV2_1x", mobilenetv2(1.0))
MODELS.add("ShuffleV1", shufflenet_v1)
MODELS.add("ShuffleV2", shufflenet_v2)
MODELS.add("ResNet18", resnet18_cifar)
MODELS.add("ResNet50", resnet50_cifar)
MODELS.add("MobileNetV1", mobilenet_v1)  # ImageNet (224x224)
# 8x8 grayscale (digits) and 28x28 grayscale (Fashion-MNIST)
MODELS.add("cnn8", small_cnn((32, 64, 128)))
MODELS.add("cnn8_small", small_cnn((8, 16, 32)))
MODELS.add("mlp8", mlp(8, (32,)))
MODELS.add("cnn28", small_cnn((32, 64, 128)))
MODELS.add("cnn28_small", small_cnn((8, 16, 32)))
MODELS.add("mlp28", mlp(28, (128, 64)))
for _arch in _TORCHVISION_ARCHS:
    MODELS.add(f"tv_{_arch}", torchvision_model(_arch))


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build zoo model `name` with a `num_classes`-way classifier (extra kwargs go to its builder)."""
    if int(num_classes) < 1:
        from kdforge.errors import ConfigError

        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    return MODELS.get(name)(int(num_classes), **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MODELS",
    "ModelInfo",
    "FeatureTaps",
    "TappedModel",
    "ModelOutput",
    "create_model",
    "count_parameters",
    "embedding_dim",
    "declare",
    "flat_embedding",
    "model_info",
    "standard_taps",
]


def embedding_dim(model: nn.Module) -> int:
    """Width of the embedding a model's classifier reads (the classifier is its last Linear layer)."""
    classifier = model.get_submodule(model_info(model).classifier)
    linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__}: classifier {model_info(model).classifier!r} has no Linear layer")
    return linears[-1].in_features
