"""torchvision's ImageNet architectures by name (`tv_resnet18`, `tv_mobilenet_v2`, ...), randomly initialised.

Weights are never fetched at run time: load a checkpoint file with `teacher_checkpoint`.
"""

from __future__ import annotations

import torch.nn as nn

from kdforge.errors import ConfigError
from kdforge.models.base import declare

KNOWN = {
    "resnet18": (("layer1", "layer2", "layer3", "layer4"), "fc:input", "fc"),
    "resnet34": (("layer1", "layer2", "layer3", "layer4"), "fc:input", "fc"),
    "resnet50": (("layer1", "layer2", "layer3", "layer4"), "fc:input", "fc"),
    "resnet101": (("layer1", "layer2", "layer3", "layer4"), "fc:input", "fc"),
    "wide_resnet50_2": (("layer1", "layer2", "layer3", "layer4"), "fc:input", "fc"),
    "mobilenet_v2": (("features.3", "features.6", "features.13", "features.18"), "classifier:input", "classifier.1"),
    "mobilenet_v3_large": ((), "classifier:input", "classifier.3"),
    "efficientnet_b0": ((), "classifier:input", "classifier.1"),
    "vgg16_bn": ((), "classifier:input", "classifier.6"),
    "shufflenet_v2_x1_0": (("stage2", "stage3", "stage4"), "fc:input", "fc"),
}


def torchvision_model(arch: str):
    stages, embedding, classifier = KNOWN[arch]

    def build(num_classes: int) -> nn.Module:
        try:
            import torchvision
        except ImportError:
            raise ConfigError(
                f"model tv_{arch} needs torchvision: pip install 'kdforge[vision]'"
            ) from None
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        return declare(model, stages, embedding, classifier)

    return build
