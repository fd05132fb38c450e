"""Every searched knob acts: generated from every method's search space (no inert dimension), and
λ moves each regulariser's own statistic the way its paper says it should."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from search_spaces import SPACES
from trainables.config import TrialConfig
from trainables.methods import Method
from trainables.trial import build_method

FAMILY = "mnist-like"  # digits
STEPS = 3
# The two ends of a knob must move the trained model by at least this fraction of what training
# itself moved it. The issue that started this measured 0.04 for AFD's inert λ.
MIN_EFFECT = 0.1


@dataclass(frozen=True)
class Dimension:
    name: str
    ends: tuple[Any, Any]


class RecordingTrial:
    """Stands in for an Optuna trial: records each dimension's two ends, suggests its low end."""

    def __init__(self) -> None:
        self.dimensions: list[Dimension] = []

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        self.dimensions.append(Dimension(name, (low, high)))
        return low

    def suggest_int(self, name: str, low: int, high: int, log: bool = False) -> int:
        self.dimensions.append(Dimension(name, (low, high)))
        return low

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.dimensions.append(Dimension(name, (choices[0], choices[-1])))
        return choices[0]


def searched(method: str) -> list[Dimension]:
    trial = RecordingTrial()
    SPACES[method].space(trial, FAMILY)
    return [d for d in trial.dimensions if d.ends[0] != d.ends[1]]


def trained(digits, method: str, steps: int = STEPS, **flat) -> tuple[Method, Method]:
    """(untrained, trained after `steps` batches) from one seed, on the same batches."""
    config = TrialConfig(method=method).replace(
        **{**SPACES[method].paper_defaults(FAMILY), "train_steps": 2, "batch_size": 64, **flat})
    torch.manual_seed(0)
    method_obj = build_method(config, digits, torch.device("cpu"))
    start = build_method(config, digits, torch.device("cpu"))
    start.load_state_dict(method_obj.state_dict())
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(digits.train), generator=gen)
    torch.manual_seed(1)
    for i in range(steps):
        idx = order[i * 64:(i + 1) * 64]
        method_obj.train()
        method_obj.train_step(digits.train.x[idx], digits.train.y[idx])
    return start.eval(), method_obj.eval()


def flat_weights(method: Method) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in method.model.parameters()])


def predictions(method: Method, x: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad() if getattr(method, "changes_inference", False) else torch.no_grad():
        return method(x).detach()


def effect(digits, method: str, dim: Dimension) -> float:
    """How far the two ends of `dim` pull the trained model apart, as a fraction of how far
    training moved it: over the weights, or over the predictions (a knob of inference only)."""
    x = digits.val.x[:128]
    (start_a, a), (_, b) = (trained(digits, method, **{dim.name: end}) for end in dim.ends)
    wa, wb, w0 = flat_weights(a), flat_weights(b), flat_weights(start_a)
    if wa.shape != wb.shape:
        return float("inf")  # a knob that changes the architecture acts by construction
    by_weights = ((wa - wb).norm() / (wa - w0).norm().clamp_min(1e-12)).item()
    pa, pb, p0 = predictions(a, x), predictions(b, x), predictions(start_a, x)
    by_predictions = ((pa - pb).norm() / (pa - p0).norm().clamp_min(1e-12)).item()
    return max(by_weights, by_predictions)


CASES = [(m, d) for m in sorted(SPACES) for d in searched(m)]


@pytest.mark.parametrize("method,dim", CASES, ids=[f"{m}-{d.name}" for m, d in CASES])
def test_every_searched_knob_changes_the_trained_model(digits, one_thread, method: str,
                                                       dim: Dimension) -> None:
    measured = effect(digits, method, dim)
    print(f"{method:14s} {dim.name:14s} {dim.ends!s:28s} effect {measured:.3g}")
    assert measured >= MIN_EFFECT, f"{method}: {dim.name} at {dim.ends} is inert ({measured:.3g})"


# λ's direction: (method, the train_step output that measures the regulariser, +1 if a larger λ
# must raise it, −1 if it must lower it). ER: the critic's Wasserstein estimate falls; AFD: the
# discriminator tells clean from adversarial codes less well (its loss rises); TLA: the triplet
# hinge falls; ADR: local compactness falls; ATLD: its MSE term (the GAN term's replacement) falls.
# ER's Wasserstein estimate fell with λ in isolation (0.052 → 0.023) but not in one full-suite run:
# the clipped critic's 30-step estimate is too noisy to assert on yet (left open in issue #11).
REGULARISERS = [("afd", "d_loss", +1), ("tla", "triplet", -1), ("adr", "local", -1),
                ("atld", "mse", -1)]
LAMBDA_STEPS = 30


def regulariser_after_training(digits, method: str, statistic: str, lam: float) -> float:
    """The statistic averaged over the last third of LAMBDA_STEPS training steps."""
    config = TrialConfig(method=method).replace(
        **{**SPACES[method].paper_defaults(FAMILY), "train_steps": 2, "lambda": lam})
    torch.manual_seed(0)
    method_obj = build_method(config, digits, torch.device("cpu")).train()
    order = torch.randperm(len(digits.train), generator=torch.Generator().manual_seed(0))
    batches = len(order) // 64
    values = []
    for i in range(LAMBDA_STEPS):
        idx = order[(i % batches) * 64:(i % batches + 1) * 64]
        out = method_obj.train_step(digits.train.x[idx], digits.train.y[idx])
        if i >= 2 * LAMBDA_STEPS // 3:
            values.append(float(out[statistic]))
    return sum(values) / len(values)


@pytest.mark.parametrize("method,statistic,direction", REGULARISERS, ids=[r[0] for r in REGULARISERS])
def test_lambda_moves_the_regulariser_the_way_the_paper_says(digits, one_thread, method: str,
                                                             statistic: str, direction: int) -> None:
    dim = next(d for d in searched(method) if d.name == "lambda")
    small, large = (regulariser_after_training(digits, method, statistic, lam) for lam in dim.ends)
    print(f"{method:14s} {statistic:10s} λ={dim.ends[0]:g}: {small:.4g}  λ={dim.ends[1]:g}: {large:.4g}")
    assert direction * (large - small) > 0, (method, statistic, small, large)
