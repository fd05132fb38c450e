"""Sanity checks of a robustness evaluation, as data: named booleans stored with every trial.

Each check looks for one symptom, from the lists of Carlini et al. (2019) and Croce et al.
(2020), of an evaluation that overstates robustness: gradient masking, a broken or unconverged
attack, a stochastic model.
`sanity_checks(curve, measurements)` returns {name: True | False | None}; None means the check
did not run (nothing to compare), never "passed". `trusted` is the AND of the checks that ran.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import torch

from trainables.protocol import CurvePoint

# Accuracy differences up to TOL (a fraction of the examples) count as noise from random starts.
TOL = 0.03
BALL_TOL = 1e-5  # float rounding of a projection, in pixel units
LOGITS_RTOL = 1e-5
# Input pixels whose CE gradient is exactly 0. Honest small-cnn models on digits (standard,
# madry): 0%; ATLD's IMT kept in the graph: 31-44% (its clamp at 0 and 1). A zero pixel never
# moves under a signed step, so above this fraction the attacks are partly blind.
ZERO_GRAD_MAX_FRACTION = 0.05
Z_95 = 1.96  # two-sided 95% normal quantile, for the Wilson interval of a black-box gap
# An ε this large lets the adversary move any image to mid-grey: accuracy must fall to chance.
LARGE_EPS = {"mnist-like": 0.5, "cifar-like": 64 / 255}

CHECKS = (
    "unbounded_eps_breaks_all",
    "monotone_in_eps",
    "pgd_le_fgsm",
    "near_chance_at_large_eps",
    "more_steps_no_gain",
    "whitebox_le_blackbox",
    "deterministic_logits",
    "no_zero_gradients",
    "adv_in_ball",
)


@dataclass(frozen=True)
class Paired:
    """Attacks a and b on the same n examples: the accuracy under each, and how many examples
    only a fooled and only b fooled (the discordant pairs, which carry all the difference:
    acc_a − acc_b = (only_b − only_a) / n)."""

    acc_a: float
    acc_b: float
    only_a: int
    only_b: int
    n: int

    @classmethod
    def of(cls, correct_a: torch.Tensor, correct_b: torch.Tensor) -> "Paired":
        """From per-example correctness under each attack (bool [n])."""
        return cls(correct_a.float().mean().item(), correct_b.float().mean().item(),
                   int((~correct_a & correct_b).sum()), int((correct_a & ~correct_b).sum()),
                   len(correct_a))

    def b_not_stronger(self) -> bool:
        """b fooled at most TOL·n more examples than a, or two standard errors of a sign test
        on the discordant pairs (2·√(only_a + only_b)), whichever is larger: below that the
        difference is what different random starts give."""
        noise = max(TOL * self.n, 2 * math.sqrt(self.only_a + self.only_b))
        return self.only_b - self.only_a <= noise

    def swapped(self) -> "Paired":
        return Paired(self.acc_b, self.acc_a, self.only_b, self.only_a, self.n)


@dataclass(frozen=True)
class Gap:
    """How much a black-box attack (Square, or a transfer from a surrogate) lowers the white-box
    worst case at one ε: `extra_fooled` of `n` examples survived every gradient attack and fell
    to it. A sound white-box evaluation leaves it near 0; gradient masking shows as a gap."""

    attack: str
    eps: float
    extra_fooled: int
    n: int

    @property
    def points(self) -> float:
        """The gap in accuracy points (a fraction of the n examples)."""
        return self.extra_fooled / self.n if self.n else 0.0

    def interval(self) -> tuple[float, float]:
        """The 95% Wilson score interval of the gap (sound at a count of 0, unlike ±2σ)."""
        if self.n == 0:
            return 0.0, 1.0
        p, n, z = self.points, self.n, Z_95
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def masks(self) -> bool:
        """The gap exceeds TOL and its interval excludes 0: the white-box attacks missed what a
        gradient-free (or another model's gradient) attack found. With n = 300 a true gap of
        5 points is flagged with probability 0.94, with n = 500 0.98 (binomial)."""
        return self.points > TOL and self.interval()[0] > 0


@dataclass(frozen=True)
class Measurements:
    """What the checks need besides the curve; None (or empty) where it was not measured."""

    num_classes: int
    subset_clean_acc: float | None = None  # clean accuracy of the sanity subset
    unbounded_acc: float | None = None  # PGD from x at ε = 1 (the whole box), sanity subset
    # PGD (one restart) at each ε of the grid on the sanity subset, every clean-correct example
    # attacked at every ε: the curve's attacks skip examples already fooled at a smaller ε, so
    # the curve cannot rise with ε; this series, measured without that shortcut, can.
    pgd_by_eps: dict[float, float] = field(default_factory=dict)
    large_eps: float | None = None
    large_eps_acc: float | None = None  # PGD at `large_eps` on the sanity subset
    budget: Paired | None = None  # PGD at the target ε: a = (S steps, R restarts), b = (2S, 2R)
    # Per black-box attack and ε: what it fooled beyond the worst case over gradient attacks.
    blackbox_gaps: tuple[Gap, ...] = ()
    logits_rel_diff: float | None = None  # max |f(x) − f(x)'| / max |f(x)| over two passes
    zero_grad_fraction: float | None = None  # input pixels whose CE gradient is exactly 0
    ball_excess: float | None = None  # max distance of any x_adv outside its ε-ball or [0, 1]


def sanity_checks(curve: list[CurvePoint], m: Measurements) -> dict[str, bool | None]:
    flags: dict[str, bool | None] = {
        "unbounded_eps_breaks_all": _unbounded_breaks_all(m),
        "monotone_in_eps": _monotone_in_eps(curve, m),
        "pgd_le_fgsm": _pgd_le_fgsm(curve),
        "near_chance_at_large_eps": _near_chance(m),
        "more_steps_no_gain": _more_steps_no_gain(m),
        "whitebox_le_blackbox": _all_or_none(not gap.masks() for gap in m.blackbox_gaps),
        "deterministic_logits": _at_most(m.logits_rel_diff, LOGITS_RTOL),
        "no_zero_gradients": _at_most(m.zero_grad_fraction, ZERO_GRAD_MAX_FRACTION),
        "adv_in_ball": _at_most(m.ball_excess, BALL_TOL),
    }
    ran = [flag for flag in flags.values() if flag is not None]
    flags["trusted"] = all(ran) if ran else None
    return flags


def gap_metrics(gaps: Iterable[Gap]) -> dict[str, float]:
    """Each black-box gap as numbers to log: blackbox_gap/<attack>/eps_<ε> and the ends of its
    95% interval (…/low, …/high), in accuracy points (fractions)."""
    metrics = {}
    for gap in gaps:
        name = f"blackbox_gap/{gap.attack}/eps_{gap.eps:.4f}"
        low, high = gap.interval()
        metrics.update({name: gap.points, f"{name}/low": low, f"{name}/high": high})
    return metrics


def _all_or_none(conditions: Iterable[bool]) -> bool | None:
    results = list(conditions)
    return all(results) if results else None


def _at_most(value: float | None, limit: float) -> bool | None:
    """value ≤ limit up to float rounding (accuracies are float32 fractions)."""
    return None if value is None else value <= limit + 1e-6


def _unbounded_breaks_all(m: Measurements) -> bool | None:
    """At ε = 1 the attack may draw any image, so a gradient attack that works leaves (almost)
    nothing robust; one stuck at x (zero or useless gradients) leaves the clean accuracy."""
    return _at_most(m.unbounded_acc, TOL)


def _monotone_in_eps(curve: list[CurvePoint], m: Measurements) -> bool | None:
    """Per (attack, norm, path) series, the worst case and the sanity subset's PGD series:
    accuracy never rises with ε (by more than TOL), starting from the clean accuracy."""
    clean = [p.accuracy for p in curve if p.attack == "clean"]
    series: dict[tuple[str, ...], list[tuple[float, float]]] = defaultdict(list)
    for p in curve:
        if p.attack != "clean":
            series[(p.attack, p.norm, p.path)].append((p.eps, p.accuracy))
    starts = {key: clean[:1] for key in series}
    if m.pgd_by_eps and m.subset_clean_acc is not None:
        series[("pgd-not-nested",)] = list(m.pgd_by_eps.items())
        starts[("pgd-not-nested",)] = [m.subset_clean_acc]
    checks = []
    for key, points in series.items():
        accs = starts[key] + [acc for _, acc in sorted(points)]
        checks.extend(_at_most(later, earlier + TOL) for earlier, later in zip(accs, accs[1:]))
    return _all_or_none(checks)


def _pgd_le_fgsm(curve: list[CurvePoint]) -> bool | None:
    """At every ε, PGD (many steps) does at least as well as FGSM (one)."""
    fgsm = {(p.eps, p.path): p.accuracy for p in curve if p.attack == "fgsm"}
    return _all_or_none(_at_most(p.accuracy, fgsm[(p.eps, p.path)] + TOL)
                        for p in curve if p.attack == "pgd" and (p.eps, p.path) in fgsm)


def _near_chance(m: Measurements) -> bool | None:
    if m.large_eps_acc is None:
        return None
    return _at_most(m.large_eps_acc, 1.0 / m.num_classes + TOL)


def _more_steps_no_gain(m: Measurements) -> bool | None:
    """The attack has converged: doubling PGD's steps and restarts neither fools more examples
    (the attacker gains nothing) nor fewer (accuracy does not rise), beyond noise."""
    if m.budget is None:
        return None
    return m.budget.b_not_stronger() and m.budget.swapped().b_not_stronger()
