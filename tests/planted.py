"""Planted defenses for the attack and sanity-check tests: a base classifier behind a front end
whose gradient is masked (or, with BPDA, not), as real defenses mask theirs."""
from __future__ import annotations

import torch
from torch import nn

from trainables.attacks import bpda


class Preprocessed(nn.Module):
    """predict(x) = model(step(x)). Kept in the autograd graph, `step` masks what it masks; with
    `straight_through` its backward is the identity (BPDA), as ATLD's predict over IMT."""

    changes_inference = True

    def __init__(self, model: nn.Module, straight_through: bool):
        super().__init__()
        self.model = model
        self.preprocess = bpda(self.step) if straight_through else self.step

    @staticmethod
    def step(x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(x))


class Quantized(Preprocessed):
    """Rounds pixels to {0, ½, 1}: a zero gradient everywhere without BPDA."""

    @staticmethod
    def step(x: torch.Tensor) -> torch.Tensor:
        return (2 * x).round() / 2


class Purified(Preprocessed):
    """IMT-like: one signed step of 0.2 away from mid-grey, clamped to [0, 1], as ATLD's IMT
    steps towards its manifold. In the graph the clamp gives every pixel that lands on 0 or 1
    (most of a digit's background) a zero gradient, but no example's whole gradient is zero."""

    @staticmethod
    def step(x: torch.Tensor) -> torch.Tensor:
        return (x + 0.2 * (x - 0.5).sign()).clamp(0.0, 1.0)
