"""VGG with batch norm for 32x32 inputs (vgg8, vgg11, vgg13, vgg16, vgg19) as in the CIFAR KD grid."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from kdforge.models.base import declare, init_weights

LAYOUTS = {
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def _conv_block(widths: list[int], in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_channels = w
    # The block ends before its last ReLU so that stage taps see pre-activation features.
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    def __init__(self, layout: list[list[int]], num_classes: int):
        super().__init__()
        in_channels = 3
        for i, widths in enumerate(layout):
            setattr(self, f"block{i}", _conv_block(widths, in_channels))
            in_channels = widths[-1]
        self.pool0 = nn.MaxPool2d(2, 2)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.pool3 = nn.MaxPool2d(2, 2)
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(512, num_classes)
        init_weights(self, linear_std=0.01)

    def forward(self, x):
        x = self.pool0(F.relu(self.block0(x)))
        x = self.pool1(F.relu(self.block1(x)))
        x = self.pool2(F.relu(self.block2(x)))
        x = F.relu(self.block3(x))
        if x.shape[-1] > 4:  # only 64x64 inputs are pooled once more; 32x32 ones stay at 4x4
            x = self.pool3(x)
        x = F.relu(self.block4(x))
        return self.classifier(self.flatten(self.pool4(x)))


def vgg(depth: int):
    def build(num_classes: int) -> nn.Module:
        return declare(
            VGG(LAYOUTS[depth], num_classes), ("block1", "block2", "block3", "block4"), classifier="classifier"
        )

    return build
