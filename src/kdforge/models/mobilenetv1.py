"""MobileNetV1 (width 1.0) for 224x224 ImageNet inputs: the student of the R50 -> MobileNetV1 ImageNet pair."""

from __future__ import annotations

import torch.nn as nn

from kdforge.models.base import declare

# (output channels, stride) of the depthwise-separable blocks after the stem
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)]


def _conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


def _depthwise_separable(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp), nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, channels = [_conv_bn(3, 32, 2)], 32
        for out, stride in BLOCKS:
            layers.append(_depthwise_separable(channels, out, stride))
            channels = out
        self.model = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.avgpool(self.model(x))))


def mobilenet_v1(num_classes: int) -> nn.Module:
    # stages end at 56x56, 28x28, 14x14 and 7x7 for a 224x224 input
    return declare(MobileNetV1(num_classes), ("model.3", "model.5", "model.11", "model.13"))
