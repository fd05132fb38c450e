"""Wide ResNets (Zagoruyko & Komodakis, 2016), pre-activation, as in Madry's and TRADES' code:
WRN-d-k has (d - 4) / 6 blocks per group and widths 16k, 32k, 64k. z is a linear projection of the
64k-d globally pooled features; the head is one linear layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models import MODELS, EmbedHeadModel, ModelSpec


class WideBlock(nn.Module):
    """conv(relu(bn(conv(relu(bn(x)))))) + shortcut; the 1x1 shortcut, when the shape changes,
    reads the activated input as in the reference implementation."""

    def __init__(self, fan_in: int, fan_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(fan_in)
        self.conv1 = nn.Conv2d(fan_in, fan_out, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(fan_out)
        self.conv2 = nn.Conv2d(fan_out, fan_out, 3, 1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or fan_in != fan_out:
            self.shortcut = nn.Conv2d(fan_in, fan_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + skip


def wide_resnet(spec: ModelSpec, depth: int, width: int) -> EmbedHeadModel:
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(f"WRN depth must be 6n + 4 with n >= 1; got {depth}")
    per_group = (depth - 4) // 6
    layers: list[nn.Module] = [nn.Conv2d(spec.input_shape[0], 16, 3, padding=1, bias=False)]
    fan_in = 16
    for group, fan_out in enumerate([16 * width, 32 * width, 64 * width]):
        for i in range(per_group):
            layers.append(WideBlock(fan_in, fan_out, 2 if group and not i else 1))
            fan_in = fan_out
    layers += [nn.BatchNorm2d(fan_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(fan_in, spec.embed_dim)]
    return EmbedHeadModel(spec, nn.Sequential(*layers), nn.Linear(spec.embed_dim, spec.num_classes))


@MODELS.register("wrn")
def wrn(spec: ModelSpec) -> EmbedHeadModel:
    """WRN-16-4: the family at a size that trains in minutes on one GPU."""
    return wide_resnet(spec, 16, 4)


@MODELS.register("wrn-28-10")
def wrn_28_10(spec: ModelSpec) -> EmbedHeadModel:
    """ATLD's and Madry's CIFAR-10 network."""
    return wide_resnet(spec, 28, 10)


@MODELS.register("wrn-34-10")
def wrn_34_10(spec: ModelSpec) -> EmbedHeadModel:
    """TRADES' CIFAR-10 network (the AutoAttack leaderboard's reference size)."""
    return wide_resnet(spec, 34, 10)
