"""Model registry. Every model takes inputs in [0, 1], normalises inside (buffers), and exposes
`embed(x) -> z` (dimension `embed_dim`, the layer the regularizers act on) and
`head(z) -> logits`; `forward(x) = head(embed(x))`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from trainables.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """What a constructor needs to know about the data."""

    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    embed_dim: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class EmbedHeadModel(nn.Module):
    """Normalise -> encoder -> z (embed_dim) -> head -> logits."""

    def __init__(self, spec: ModelSpec, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.embed_dim = spec.embed_dim
        self.num_classes = spec.num_classes
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1))
        self.encoder = encoder
        self.classifier = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.mean) / self.std)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


MODELS: Registry[Callable[[ModelSpec], EmbedHeadModel]] = Registry("model")


def build_model(name: str, spec: ModelSpec) -> EmbedHeadModel:
    return MODELS.get(name)(spec)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


@MODELS.register("small-cnn")
def small_cnn(spec: ModelSpec) -> EmbedHeadModel:
    """Two conv blocks pooled to 4x4, a linear bottleneck z, an MLP head: fits 8x8 digits,
    28x28 MNIST and 32x32 CIFAR alike, and trains in seconds on a CPU."""
    channels = spec.input_shape[0]
    encoder = nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(64 * 16, spec.embed_dim),  # z is linear: priors such as N(0, I) must be reachable
    )
    return EmbedHeadModel(spec, encoder, mlp([spec.embed_dim, 128, spec.num_classes]))


# Every other module in this package registers its models on import: adding a model is adding a file.
def _import_all() -> None:
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()
