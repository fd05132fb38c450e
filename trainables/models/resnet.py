"""CIFAR ResNet-18 (He et al., 2016; the 3x3-stem variant of Madry's and TRADES' code): z is a
linear projection of the 512-d globally pooled features; the head is one linear layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models import MODELS, EmbedHeadModel, ModelSpec


class BasicBlock(nn.Module):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); a 1x1 conv shortcut where the shape
    changes."""

    def __init__(self, fan_in: int, fan_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(fan_in, fan_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(fan_out)
        self.conv2 = nn.Conv2d(fan_out, fan_out, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(fan_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or fan_in != fan_out:
            self.shortcut = nn.Sequential(nn.Conv2d(fan_in, fan_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(fan_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet_encoder(channels: int, blocks: list[int], embed_dim: int) -> nn.Sequential:
    """3x3 stem (64), four stages of BasicBlocks (64, 128, 256, 512; strides 1, 2, 2, 2),
    global average pooling (any input size), Linear(512, embed_dim)."""
    layers: list[nn.Module] = [nn.Conv2d(channels, 64, 3, padding=1, bias=False),
                               nn.BatchNorm2d(64), nn.ReLU()]
    fan_in = 64
    for stage, (width, count) in enumerate(zip([64, 128, 256, 512], blocks)):
        for i in range(count):
            layers.append(BasicBlock(fan_in, width, 2 if stage and not i else 1))
            fan_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(fan_in, embed_dim)]
    return nn.Sequential(*layers)


@MODELS.register("resnet18")
def resnet18(spec: ModelSpec) -> EmbedHeadModel:
    encoder = resnet_encoder(spec.input_shape[0], [2, 2, 2, 2], spec.embed_dim)
    return EmbedHeadModel(spec, encoder, nn.Linear(spec.embed_dim, spec.num_classes))
