"""Robustness curves: accuracy under each attack at each ε, plus the per-example worst case.

Every attack is given the method itself (its full inference path, `predict`) in eval mode.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from trainables.attacks import eval_mode, fgsm, pgd
from trainables.data import Split


@dataclass(frozen=True)
class CurvePoint:
    attack: str
    norm: str
    eps: float
    steps: int
    restarts: int
    n_examples: int
    accuracy: float

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def _correct(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return net(x).argmax(1) == y


def _batched_correct(net: nn.Module, split: Split, batch_size: int,
                     perturb: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Per-example correctness after `perturb`, batch by batch (bool [N], on the device)."""
    parts = []
    for start in range(0, len(split), batch_size):
        x, y = split.x[start:start + batch_size], split.y[start:start + batch_size]
        parts.append(_correct(net, perturb(x, y), y))
    return torch.cat(parts)


def accuracy(net: nn.Module, split: Split, batch_size: int = 512) -> float:
    with eval_mode(net):
        return _batched_correct(net, split, batch_size, lambda x, y: x).float().mean().item()


def pgd_accuracy(net: nn.Module, split: Split, eps: float, steps: int,
                 restarts: int = 1, batch_size: int = 512) -> float:
    def attack(x, y):
        return pgd(net, x, y, eps, steps, restarts=restarts)

    with eval_mode(net):
        return _batched_correct(net, split, batch_size, attack).float().mean().item()


def robustness_curve(net: nn.Module, split: Split, eps_grid: tuple[float, ...], pgd_steps: int,
                     pgd_restarts: int = 1, batch_size: int = 512) -> list[CurvePoint]:
    """Clean, FGSM and PGD-L∞ accuracy at every ε, and `worst`: an example counts as robust at ε
    only if every attack run there failed on it."""
    n = len(split)
    points: list[CurvePoint] = []
    with eval_mode(net):
        clean = _batched_correct(net, split, batch_size, lambda x, y: x)
        points.append(CurvePoint("clean", "none", 0.0, 0, 0, n, clean.float().mean().item()))
        for eps in eps_grid:
            attacks = {
                "fgsm": (1, 1, lambda x, y, e=eps: fgsm(net, x, y, e)),
                "pgd": (pgd_steps, pgd_restarts,
                        lambda x, y, e=eps: pgd(net, x, y, e, pgd_steps, restarts=pgd_restarts)),
            }
            worst = clean.clone()
            for name, (steps, restarts, perturb) in attacks.items():
                correct = _batched_correct(net, split, batch_size, perturb)
                worst &= correct
                points.append(CurvePoint(name, "Linf", eps, steps, restarts, n,
                                         correct.float().mean().item()))
            points.append(CurvePoint("worst", "Linf", eps, 0, 0, n, worst.float().mean().item()))
    return points


def worst_at(points: list[CurvePoint], eps: float) -> float:
    """The worst-case accuracy of a curve at ε (the point closest to it)."""
    worst = [p for p in points if p.attack == "worst"]
    return min(worst, key=lambda p: abs(p.eps - eps)).accuracy
