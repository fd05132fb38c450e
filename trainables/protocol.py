"""What a trial's evaluation is about, shared by the modules that run it (`trial`, `evaluate`)
and judge it (`sanity`): the ε protocol and the points of a robustness curve. It sits below all
three, so none of them imports another to get these types.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from trainables.config import TrialConfig
from trainables.data import eps_protocol


@dataclass(frozen=True)
class Protocol_:
    """The ε values a trial uses, with the dataset family's defaults filled in."""

    target_eps: float
    train_eps: float
    eps_grid: tuple[float, ...]


def resolve_protocol(config: TrialConfig, family: str) -> Protocol_:
    """The config's ε values, the dataset's protocol (else its family's) where they are unset."""
    standard = eps_protocol(config.data.dataset, family)
    target = config.eval.target_eps if config.eval.target_eps is not None else standard.target_eps
    train_eps = config.attack.train_eps if config.attack.train_eps is not None else target
    grid = config.eval.eps_grid or standard.eps_grid
    if not any(math.isclose(e, target) for e in grid):
        grid = tuple(sorted((*grid, target)))  # the headline ε must be on the curve
    return Protocol_(target, train_eps, tuple(e for e in grid if e > 0))


@dataclass(frozen=True)
class CurvePoint:
    attack: str  # an ATTACKS name, "clean", or "worst"
    norm: str  # "Linf" | "L2" | "none" (clean)
    eps: float  # in the norm's units, [0, 1] pixel scale
    steps: int
    restarts: int
    n_examples: int
    accuracy: float
    path: str = "predict"  # the inference path attacked: "predict" (full) or "base" (method.model)

    def as_dict(self) -> dict:
        return asdict(self)
