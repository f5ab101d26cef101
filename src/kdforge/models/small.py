"""Small networks for the 8x8 (digits) and 28x28 (Fashion-MNIST) suites that run on a CPU in seconds."""

from __future__ import annotations

import torch.nn as nn

from kdforge.models.base import declare


def _conv_bn_relu(inp: int, oup: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Three conv stages (the last two halve the resolution), global pooling, linear classifier."""

    def __init__(self, num_classes: int, widths=(32, 64, 128), in_channels: int = 1):
        super().__init__()
        self.stage1 = nn.Sequential(_conv_bn_relu(in_channels, widths[0]), _conv_bn_relu(widths[0], widths[0]))
        self.stage2 = nn.Sequential(_conv_bn_relu(widths[0], widths[1], 2), _conv_bn_relu(widths[1], widths[1]))
        self.stage3 = nn.Sequential(_conv_bn_relu(widths[1], widths[2], 2), _conv_bn_relu(widths[2], widths[2]))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x):
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


class MLP(nn.Module):
    """Flatten, hidden ReLU layers, linear classifier: the capacity-starved student."""

    def __init__(self, num_classes: int, input_size: int, hidden=(64,), in_channels: int = 1):
        super().__init__()
        self.inflatten = nn.Flatten(1)
        layers: list[nn.Module] = []
        width = in_channels * input_size * input_size
        for h in hidden:
            layers.append(nn.Sequential(nn.Linear(width, h), nn.ReLU(inplace=True)))
            width = h
        self.hidden = nn.Sequential(*layers)
        self.flatten = nn.Identity()  # the embedding tap: output of the last hidden layer
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.hidden(self.inflatten(x))))


def small_cnn(widths):
    def build(num_classes: int, in_channels: int = 1) -> nn.Module:
        return declare(SmallCNN(num_classes, widths, in_channels), ("stage1", "stage2", "stage3"))

    return build


def mlp(input_size: int, hidden):
    def build(num_classes: int, in_channels: int = 1) -> nn.Module:
        stages = tuple(f"hidden.{i}" for i in range(len(hidden)))
        return declare(MLP(num_classes, input_size, hidden, in_channels), stages)

    return build
