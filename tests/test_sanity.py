"""The sanity checks: each flag on hand-made curves, then on real evaluations — a PGD-trained
model passes the gradient-masking checks, models with masked gradients trip them, and a trial
reports its flags."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from trainables.config import EvalConfig, TrialConfig
from trainables.evaluate import CurvePoint, evaluate_trial
from trainables.sanity import CHECKS, Measurements, Paired, sanity_checks
from trainables.trial import Protocol_, run_trial

from conftest import train_method

pytestmark = pytest.mark.usefixtures("one_thread")

MASKING_CHECKS = ("no_zero_gradients", "whitebox_le_blackbox", "more_steps_no_gain")
PROTOCOL = Protocol_(target_eps=0.2, train_eps=0.2, eps_grid=(0.1, 0.2))
EVAL = EvalConfig(eval_examples=100, eval_sanity_examples=100, eval_steps=20)


def point(attack: str, eps: float, accuracy: float, norm: str = "Linf") -> CurvePoint:
    return CurvePoint(attack, norm, eps, 20, 1, 100, accuracy)


GOOD_CURVE = [
    CurvePoint("clean", "none", 0.0, 0, 0, 100, 0.9),
    point("fgsm", 0.1, 0.6), point("pgd", 0.1, 0.5), point("worst", 0.1, 0.5),
    point("fgsm", 0.2, 0.4), point("pgd", 0.2, 0.3), point("worst", 0.2, 0.3),
]
GOOD = Measurements(
    num_classes=10, eps0_clean_acc=0.9, eps0_acc={"fgsm": 0.9, "pgd": 0.9},
    pgd_by_eps={0.1: 0.52, 0.2: 0.31}, large_eps=0.5,
    large_eps_acc=0.0, budget=Paired(0.3, 0.29, only_a=1, only_b=2, n=100),
    whitebox_blackbox=(Paired(0.3, 0.45, only_a=15, only_b=0, n=100),),
    logits_rel_diff=0.0, zero_grad_fraction=0.0, ball_excess=0.0,
)


def test_a_sound_evaluation_is_trusted():
    flags = sanity_checks(GOOD_CURVE, GOOD)
    assert list(flags) == [*CHECKS, "trusted"]
    assert all(flags.values())


@pytest.mark.parametrize("check, curve, measurements", [
    ("eps0_equals_clean", GOOD_CURVE, replace(GOOD, eps0_acc={"fgsm": 0.9, "pgd": 0.89})),
    ("monotone_in_eps", GOOD_CURVE[:4] + [point("fgsm", 0.2, 0.7)], GOOD),
    ("monotone_in_eps", GOOD_CURVE[:1] + [point("fgsm", 0.1, 0.95), point("pgd", 0.1, 0.95)], GOOD),
    # The curve is nested (monotone by construction); the sanity subset's PGD series is not.
    ("monotone_in_eps", GOOD_CURVE, replace(GOOD, pgd_by_eps={0.1: 0.5, 0.2: 0.6})),
    ("pgd_le_fgsm", GOOD_CURVE[:1] + [point("fgsm", 0.1, 0.5), point("pgd", 0.1, 0.6)], GOOD),
    ("near_chance_at_large_eps", GOOD_CURVE, replace(GOOD, large_eps_acc=0.4)),
    ("more_steps_no_gain", GOOD_CURVE, replace(GOOD, budget=Paired(0.3, 0.2, 0, 10, 100))),
    ("more_steps_no_gain", GOOD_CURVE, replace(GOOD, budget=Paired(0.3, 0.4, 10, 0, 100))),
    ("whitebox_le_blackbox", GOOD_CURVE, replace(GOOD, whitebox_blackbox=(
        GOOD.whitebox_blackbox[0], Paired(0.5, 0.2, only_a=0, only_b=30, n=100)))),
    ("deterministic_logits", GOOD_CURVE, replace(GOOD, logits_rel_diff=0.01)),
    ("no_zero_gradients", GOOD_CURVE, replace(GOOD, zero_grad_fraction=0.5)),
    ("adv_in_ball", GOOD_CURVE, replace(GOOD, ball_excess=0.01)),
])
def test_each_check_fails_on_its_symptom(check, curve, measurements):
    flags = sanity_checks(curve, measurements)
    assert flags[check] is False
    assert flags["trusted"] is False
    assert all(flags[name] for name in CHECKS if name != check)


def test_paired_comparisons_allow_for_random_start_noise():
    """b is "stronger" only beyond TOL·n examples and two sign-test standard errors."""
    a = torch.tensor([True] * 6 + [False] * 4)
    b = torch.tensor([False, True, True, True, True, True, True, False, False, False])
    pair = Paired.of(a, b)
    assert (pair.only_a, pair.only_b, pair.n) == (1, 1, 10)
    assert pair.acc_a == pytest.approx(0.6) and pair.acc_b == pytest.approx(0.6)
    assert Paired(0.5, 0.45, only_a=10, only_b=15, n=100).b_not_stronger()  # 5 <= 2·√25
    assert not Paired(0.5, 0.45, only_a=0, only_b=5, n=100).b_not_stronger()  # 5 > 2·√5
    assert Paired(0.5, 0.47, only_a=0, only_b=3, n=100).b_not_stronger()  # 3 <= TOL·n


def test_checks_that_did_not_run_are_none_not_true():
    flags = sanity_checks(GOOD_CURVE[:1], Measurements(num_classes=10))
    assert all(flags[name] is None for name in CHECKS)
    assert flags["trusted"] is None
    partial = sanity_checks(GOOD_CURVE, Measurements(num_classes=10, zero_grad_fraction=0.0))
    assert partial["whitebox_le_blackbox"] is None and partial["trusted"] is True








@pytest.fixture(scope="module")
def madry(digits):
    """PGD adversarial training at ε = 0.2, short: a few seconds on a CPU."""
    return train_method(digits, "madry", epochs=3, train_steps=7, train_eps=0.2)


@pytest.fixture(scope="module")
def standard(digits):
    return train_method(digits, "standard", epochs=5)


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


def test_pgd_trained_model_passes_the_masking_checks(digits, madry):
    evaluation = evaluate_trial(madry, digits.test, PROTOCOL, EVAL, "mnist-like")
    assert all(evaluation.sanity[name] is True for name in MASKING_CHECKS), evaluation.measurements
    assert evaluation.sanity["trusted"] is True, evaluation.sanity
    assert 0.1 < evaluation.robust_acc < evaluation.clean_acc


@pytest.mark.parametrize("wrapper", [Thresholded, Saturated])
def test_masked_gradients_are_caught(digits, standard, wrapper):
    evaluation = evaluate_trial(wrapper(standard.model), digits.test, PROTOCOL, EVAL, "mnist-like")
    assert evaluation.sanity["no_zero_gradients"] is False
    assert evaluation.sanity["whitebox_le_blackbox"] is False, evaluation.measurements
    assert evaluation.sanity["trusted"] is False


def test_a_trial_reports_its_flags():
    config = TrialConfig(method="standard").replace(
        epochs=1, eval_examples=40, eval_sanity_examples=40, eps_grid=(0.1, 0.3), val_examples=64)
    reports = []

    class Collect:
        def report(self, metrics, state):
            reports.append(metrics)

    result = run_trial(config, Collect())
    assert set(result.sanity) == {*CHECKS, "trusted"}
    assert reports[-1]["sanity"] == result.sanity
    assert result.sanity["adv_in_ball"] is True and result.sanity["eps0_equals_clean"] is True
    assert {p.path for p in result.curve} == {"predict"}
