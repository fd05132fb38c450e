"""ER-Classifier's CIFAR-10 network (Li et al., Appendix G, Tables 15-16): the 16 conv layers of
VGG19 with BatchNorm and one FC layer as the encoder Q: x -> z, and an MLP classifier
C: z -> k -> 512 -> 512 -> 512 -> classes."""
from __future__ import annotations

from torch import nn

from trainables.models import MODELS, EmbedHeadModel, ModelSpec, mlp

VGG19 = [64, 64, "pool", 128, 128, "pool", 256, 256, 256, 256, "pool",
         512, 512, 512, 512, "pool", 512, 512, 512, 512, "pool"]


def vgg_features(channels: int, plan: list) -> list[nn.Module]:
    """conv3x3-BN-ReLU per width; 2x2 max pools with ceil_mode, so a 1x1 map stays 1x1 (8x8 inputs
    would otherwise vanish after three of the five pools)."""
    layers: list[nn.Module] = []
    for item in plan:
        if item == "pool":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
            channels = item
    return layers


@MODELS.register("vgg-er")
def vgg_er(spec: ModelSpec) -> EmbedHeadModel:
    encoder = nn.Sequential(
        *vgg_features(spec.input_shape[0], VGG19),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # 1x1 already on 32x32; any size on others
        nn.Linear(512, spec.embed_dim),
    )
    return EmbedHeadModel(spec, encoder, mlp([spec.embed_dim, 512, 512, 512, spec.num_classes]))
