"""LeNet-style MNIST CNN: the 4-conv/3-FC network of Carlini & Wagner that TRADES (SmallCNN) and
ADR (CNN-4C3F(32)) train on MNIST: conv32-conv32-pool-conv64-conv64-pool, fc200-fc200."""
from __future__ import annotations

from torch import nn

from trainables.models import MODELS, EmbedHeadModel, ModelSpec


def conv_relu(widths: list[int]) -> list[nn.Module]:
    """3x3 convolutions with ReLU; padding 1 (the original has none) keeps 8x8 digits alive."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Conv2d(fan_in, fan_out, 3, padding=1), nn.ReLU()]
    return layers


@MODELS.register("lenet")
def lenet(spec: ModelSpec) -> EmbedHeadModel:
    encoder = nn.Sequential(
        *conv_relu([spec.input_shape[0], 32, 32]), nn.MaxPool2d(2, ceil_mode=True),
        *conv_relu([32, 64, 64]), nn.MaxPool2d(2, ceil_mode=True),
        nn.AdaptiveMaxPool2d(4), nn.Flatten(),  # 4x4 as on 28x28 without padding, for any input
        nn.Linear(64 * 16, spec.embed_dim),  # z: the generator output ADR regularises
    )
    head = nn.Sequential(
        nn.Linear(spec.embed_dim, 200), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(200, 200), nn.ReLU(),
        nn.Linear(200, spec.num_classes),
    )
    return EmbedHeadModel(spec, encoder, head)
