"""Planted defenses for the attack and sanity-check tests: a base classifier behind a front end
whose gradient is masked (or, with BPDA, not), as real defenses mask theirs."""
from __future__ import annotations

import torch
from torch import nn

from trainables.attacks import LinfBall, bpda
from trainables.methods.atld import imt_magnitude


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


class InGraphIMT(nn.Module):
    """ATLD's predict before the straight-through fix (96e2da0): IMT kept in the autograd graph,
    so sign(·) and the mask give zero gradient and the clamp to [0, 1] zeroes every pixel that
    lands on 0 or 1. The same forward as `atld.predict`."""

    changes_inference = True

    def __init__(self, atld: nn.Module):
        super().__init__()
        self.atld = atld
        self.model = atld.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        atld, eps = self.atld, self.atld.settings.train_eps
        grad, p_natural = atld._manifold_grad(x, create_graph=x.requires_grad)
        m = imt_magnitude(p_natural, atld.hp.imt).view(-1, *[1] * (x.dim() - 1))
        return self.model(LinfBall(eps).project(x - eps * m * grad.sign(), x))


class Thresholded(nn.Module):
    """A hard binarising front end (x > ½): its gradient is zero everywhere."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x > 0.5).float())


class Saturated(nn.Module):
    """Logits scaled by 10⁴: the softmax saturates and the CE gradient underflows to zero."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e4 * self.model(x)


class Noisy(nn.Module):
    """Gaussian noise on the input at inference: a randomised defense, different logits per call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + 0.05 * torch.randn_like(x))


class Trapdoor(nn.Module):
    """`model`, except within 1e-4 (L∞) of a hidden point (`doors`, each with the label of the
    example it was placed beside): there that label loses. No gradient leads to a door and a
    random search never lands on one; an attack planted to return it breaks the example, and
    only that attack does."""

    def __init__(self, model: nn.Module, doors: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("doors", doors)
        self.register_buffer("labels", labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        distance = (x.unsqueeze(1) - self.doors.unsqueeze(0)).flatten(2).abs().amax(2)
        at_door, nearest = distance.min(1)
        label = nn.functional.one_hot(self.labels[nearest], logits.shape[1]).bool()
        return logits - 1e4 * ((at_door < 1e-4)[:, None] & label)


def doors(x: torch.Tensor, eps: float) -> torch.Tensor:
    """One door per example, at L∞ distance eps towards mid-grey (inside the box)."""
    return (x + eps * (1 - 2 * (x > 0.5).float())).clamp(0, 1)


def open_doors(model: Trapdoor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """An attack that knows the doors: each x with a door in its ε-ball goes to it."""
    distance = (x.unsqueeze(1) - model.doors.unsqueeze(0)).flatten(2).abs().amax(2)
    nearest = distance.argmin(1)
    has_door = distance.gather(1, nearest[:, None]).squeeze(1) <= eps + 1e-6
    return torch.where(has_door.view(-1, *[1] * (x.dim() - 1)), model.doors[nearest], x)
