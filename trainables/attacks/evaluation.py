"""The named evaluation attacks (`ATTACKS`), one small registered function each.

Every entry crafts untargeted adversarial examples for a batch: `attack(net, x, y, eps, settings)
-> x_adv`, per example, inside the ε-ball of its norm and the [0, 1] box; `net` runs in eval mode
and gets its mode back; gradients are taken w.r.t. the input only. `kind` says what the attack
reads of `net`, which the sanity checks use:
    gradient  - input gradients of `net` (white-box)
    query     - only `net`'s scores (black-box: immune to gradient masking)
    transfer  - gradients of another network (`settings.surrogate`), never of `net`
    ensemble  - AutoAttack: gradient and query attacks in a cascade
Each entry also carries its `label` (how figures and tables name it), the profiles that run it
at every ε of the grid (`grid`; empty: only where the evaluation asks for it), and whether its
x_adv comes out of the project's own projection (`projects`; the package's attacks do not, so
their x_adv are the ones the `adv_in_ball` check measures).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from trainables.attacks.autoattack import (AUTOATTACK_ITERATIONS, apgd, autoattack, autoattack_cascade,
                                           square)
from trainables.attacks.core import cw_linf, fgsm, mim, pgd, pgd_l2, restart_until_fooled
from trainables.registry import Registry


@dataclass(frozen=True)
class AttackSettings:
    """The budget knobs of the evaluation attacks (filled from `EvalConfig`)."""

    steps: int = 20
    restarts: int = 1  # PGD / CW / PGD-L2: attempts per example, cascaded over still-robust points
    eot: int = 1  # gradient samples averaged per step (EOT), for randomised defenses
    square_queries: int = 1000
    autoattack_version: str = "standard"
    seed: int = 0
    surrogate: nn.Module | None = None  # the network a transfer attack is crafted on


Craft = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, AttackSettings], torch.Tensor]


@dataclass(frozen=True)
class EvalAttack:
    name: str
    norm: str  # "Linf" | "L2": the unit of eps
    kind: str  # gradient | query | transfer | ensemble (see the module docstring)
    craft: Craft
    budget: Callable[[AttackSettings], tuple[int, int]]  # (steps, restarts) a curve point records
    label: str
    grid: tuple[str, ...]  # the profiles that run it at every ε of the grid
    projects: bool  # x_adv projected by the project's own threat model (trainables.attacks.core)

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                 settings: AttackSettings) -> torch.Tensor:
        return self.craft(net, x, y, eps, settings)


ATTACKS: Registry[EvalAttack] = Registry("attack")
# Curve rows that are not attacks.
ROW_LABELS = {"clean": "clean", "worst": "worst case"}


ALL, STANDARD_UP, FULL = ("quick", "standard", "full"), ("standard", "full"), ("full",)


def _steps_and_restarts(s: AttackSettings) -> tuple[int, int]:
    return s.steps, s.restarts


def register_attack(name: str, norm: str, kind: str, label: str, grid: tuple[str, ...] = (),
                    budget: Callable[[AttackSettings], tuple[int, int]] = _steps_and_restarts,
                    projects: bool = True) -> Callable[[Craft], Craft]:
    def add(craft: Craft) -> Craft:
        ATTACKS.register(name)(EvalAttack(name, norm, kind, craft, budget, label, grid, projects))
        return craft

    return add


def label(name: str) -> str:
    """How figures and tables name a curve row: an attack's label, "clean" or "worst case"."""
    return ROW_LABELS.get(name) or ATTACKS.get(name).label


def grid_attacks(profile: str) -> tuple[str, ...]:
    """The attacks `profile` runs at every ε of the grid, in registration order (cheap first;
    "transfer" only runs when the evaluation has a surrogate)."""
    return tuple(name for name in ATTACKS.registered() if profile in ATTACKS.get(name).grid)


@register_attack("fgsm", "Linf", "gradient", "FGSM", ALL, budget=lambda s: (1, 1))
def _fgsm(net, x, y, eps, s: AttackSettings):
    return fgsm(net, x, y, eps, eot=s.eot)


@register_attack("pgd", "Linf", "gradient", "PGD-L∞", ALL)
def _pgd(net, x, y, eps, s: AttackSettings):
    return restart_until_fooled(lambda xs, ys: pgd(net, xs, ys, eps, s.steps, eot=s.eot),
                                net, x, y, s.restarts)


@register_attack("cw", "Linf", "gradient", "CW-L∞", STANDARD_UP)
def _cw(net, x, y, eps, s: AttackSettings):
    return restart_until_fooled(lambda xs, ys: cw_linf(net, xs, ys, eps, s.steps, eot=s.eot),
                                net, x, y, s.restarts)


@register_attack("pgd-l2", "L2", "gradient", "PGD-L2", FULL)
def _pgd_l2(net, x, y, eps, s: AttackSettings):
    return restart_until_fooled(lambda xs, ys: pgd_l2(net, xs, ys, eps, s.steps, eot=s.eot),
                                net, x, y, s.restarts)


@register_attack("mim", "Linf", "gradient", "MIM", FULL, budget=lambda s: (s.steps, 1))
def _mim(net, x, y, eps, s: AttackSettings):
    return mim(net, x, y, eps, s.steps, eot=s.eot)


@register_attack("autoattack", "Linf", "ensemble", "AutoAttack",
                 budget=lambda s: (AUTOATTACK_ITERATIONS, 1), projects=False)
def _autoattack(net, x, y, eps, s: AttackSettings):
    return autoattack(net, x, y, eps, version=s.autoattack_version, seed=s.seed)


@register_attack("square", "Linf", "query", "Square", FULL, budget=lambda s: (s.square_queries, 1),
                 projects=False)
def _square(net, x, y, eps, s: AttackSettings):
    return square(net, x, y, eps, s.square_queries, seed=s.seed)


@register_attack("transfer", "Linf", "transfer", "transfer", ALL, budget=lambda s: (s.steps, 1))
def _transfer(net, x, y, eps, s: AttackSettings):
    """PGD crafted on the surrogate; `net` is only the target it is scored on."""
    if s.surrogate is None:
        raise ValueError("the transfer attack needs AttackSettings.surrogate")
    return pgd(s.surrogate, x, y, eps, s.steps)


def _autoattack_stage(stage: str) -> Craft:
    """One sub-attack of AutoAttack's `settings.autoattack_version`, alone, with the package's
    settings for that version."""

    def craft(net, x, y, eps, s: AttackSettings):
        return autoattack_cascade(net, x, y, eps, s.autoattack_version, s.seed, stages=(stage,)).x_adv

    return craft


# AutoAttack's sub-attacks: the evaluation records which of them broke each point (square, its
# black-box stage, is registered above).
for _stage, _label in (("apgd-ce", "APGD-CE"), ("apgd-t", "APGD-T"), ("fab-t", "FAB-T")):
    register_attack(_stage, "Linf", "gradient", _label, budget=lambda s: (AUTOATTACK_ITERATIONS, 1),
                    projects=False)(_autoattack_stage(_stage))


@register_attack("apgd-dlr", "Linf", "gradient", "APGD-DLR",
                 budget=lambda s: (AUTOATTACK_ITERATIONS, 1), projects=False)
def _apgd_dlr(net, x, y, eps, s: AttackSettings):
    """The second stage of AutoAttack's "rand" version, alone here without its EOT (that
    version's first stage, APGD-CE, is registered above)."""
    return apgd(net, x, y, eps, "dlr", AUTOATTACK_ITERATIONS, 1, seed=s.seed)
