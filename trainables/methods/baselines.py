"""The baselines every paper compares against."""
from __future__ import annotations

import torch

from trainables.methods import METHODS
from trainables.methods.base import Method, cross_entropy


@METHODS.register("standard")
class Standard(Method):
    description = "no defense: cross-entropy on clean inputs"
    paper = "baseline"
    baseline = True

    def __init__(self, model, hp, settings):
        super().__init__(model, hp, settings)
        self.optimizers["model"] = self.make_optimizer(model.parameters())

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = cross_entropy(self.model(x), y)
        self.descend(self.optimizers["model"], loss)
        return {"loss": loss.detach()}


@METHODS.register("madry")
class Madry(Method):
    description = "PGD adversarial training: cross-entropy on PGD-L∞ examples"
    paper = "Madry et al., 2018"
    baseline = True

    def __init__(self, model, hp, settings):
        super().__init__(model, hp, settings)
        self.optimizers["model"] = self.make_optimizer(model.parameters())

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        x_adv = self.adversary(x, y)
        loss = cross_entropy(self.model(x_adv), y)
        self.descend(self.optimizers["model"], loss)
        return {"loss": loss.detach()}
