"""Robustness curves, the evaluation profiles, and the sanity measurements of a trial.

Profiles (`EvalConfig.eval_profile`), each adding to the one before:
    quick     clean, FGSM and PGD-L∞ (eval_steps, eval_restarts) at every ε of the grid
    standard  + CW-L∞ at every ε; at the target ε PGD and CW get max(eval_restarts,
              eval_strong_restarts) restarts, and AutoAttack (`autoattack_version`) runs
    full      + MIM, Square (eval_square_queries) and PGD-L2 (ε₂ = scale·ε) at every ε
Any profile given a `surrogate` adds a transfer attack (PGD on it, scored on the method) at
every ε; `run_trial` gives one in standard and full (`trial.standard_surrogate`).
The curve's `worst` at ε is per example over every L∞ attack run at ε: an example counts as
robust only if it is classified correctly and every attack failed on it.

Attacks are given the method itself, so they differentiate through its full `predict` (with the
method's `bpda` steps, and EOT with eval_eot_samples > 1). A method whose `predict` is not
`model(x)` says so with `changes_inference = True`; AutoAttack is then also crafted on the base
classifier `method.model` and scored on `predict` (path="base": the non-adaptive evaluation the
papers report), and that counts in the worst case too.

Attacks only run on the examples classified correctly without attack: the others are
non-robust at every ε anyway (the adversary may return x itself). AutoAttack, itself a cascade
over still-robust points, is the last stage of one: it attacks only the points every attack
before it at its ε left robust, so its curve point is the worst case over those attacks and
AutoAttack (never above AutoAttack alone), and its cost is that of the points still standing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Collection, Mapping

import torch
from torch import nn

from trainables.attacks import (
    ATTACKS,
    AttackSettings,
    ball_excess,
    ce_loss,
    correct,
    eval_mode,
    input_grad,
    pgd,
)
from trainables.config import EvalConfig
from trainables.data import Split
from trainables.protocol import CurvePoint, Protocol_
from trainables.sanity import LARGE_EPS, Gap, Measurements, Paired, sanity_checks

PROFILES = ("quick", "standard", "full")
# Profiles without AutoAttack: their robust accuracy is an upper bound, labelled so wherever shown.
UPPER_BOUND_PROFILES = ("quick",)
# "transfer" runs only when a surrogate is given (trial.py gives one in standard and full).
GRID_ATTACKS = {
    "quick": ("fgsm", "pgd", "transfer"),
    "standard": ("fgsm", "pgd", "cw", "transfer"),
    "full": ("fgsm", "pgd", "cw", "mim", "square", "transfer", "pgd-l2"),
}
EVAL_SEED = 0  # every trial is attacked with the same random starts


@dataclass(frozen=True)
class Evaluation:
    curve: list[CurvePoint]
    sanity: dict[str, bool | None]  # trainables.sanity.CHECKS plus "trusted"
    robust_acc: float  # worst case at the target ε
    clean_acc: float
    autoattack_acc: float | None  # AutoAttack on `predict` at the target ε; None in `quick`
    measurements: Measurements


@dataclass(frozen=True)
class Job:
    """One attack at one ε (in the attack's norm) on one inference path: one curve point."""

    attack: str
    eps: float
    path: str = "predict"


@dataclass(frozen=True)
class Budgets:
    """The attack settings of each curve point: `strong` (restarts) at the target ε, where the
    headline number is measured, `grid` at the other ε, whose points only draw the curve."""

    strong: AttackSettings
    grid: AttackSettings
    target_eps: float | None = None

    @classmethod
    def uniform(cls, settings: AttackSettings) -> "Budgets":
        return cls(settings, settings)

    def at(self, job: Job) -> AttackSettings:
        on_target = job.eps == self.target_eps and ATTACKS.get(job.attack).norm == "Linf"
        return self.strong if on_target else self.grid


def accuracy(net: nn.Module, split: Split, batch_size: int = 512) -> float:
    with eval_mode(net):
        return _correct_all(net, split, batch_size).float().mean().item()


def pgd_accuracy(net: nn.Module, split: Split, eps: float, steps: int,
                 restarts: int = 1, batch_size: int = 512) -> float:
    settings = AttackSettings(steps=steps, restarts=restarts)
    return _Attacker(net, net, Budgets.uniform(settings), batch_size).accuracy(Job("pgd", eps), split)


def evaluate_trial(method: nn.Module, test_split: Split, protocol: Protocol_,
                   eval_cfg: EvalConfig, family: str,
                   surrogate: nn.Module | None = None) -> Evaluation:
    """The final evaluation of a trial on `eval_examples` test points: the profile's curve, the
    sanity measurements on the first `eval_sanity_examples` of them, and the checks' flags."""
    if eval_cfg.eval_profile not in PROFILES:
        raise ValueError(f"unknown eval_profile {eval_cfg.eval_profile!r}; "
                         f"known: {', '.join(PROFILES)}")
    device = next(method.parameters()).device
    split = test_split.head(eval_cfg.eval_examples).to(device)
    base = method.model if getattr(method, "changes_inference", False) else None
    target = min(protocol.eps_grid, key=lambda e: abs(e - protocol.target_eps))
    budgets = attack_budgets(eval_cfg, target, surrogate)
    jobs = plan(eval_cfg.eval_profile, protocol.eps_grid, target,
                l2_eps_scale(eval_cfg, split.x[0].numel()), base is not None, surrogate is not None)
    devices = [device] if device.type == "cuda" else []
    # A fixed seed, in a forked random state: the same attack for every trial, and the trial's
    # own random stream is left as it was.
    with torch.random.fork_rng(devices=devices), eval_mode(method):
        torch.manual_seed(EVAL_SEED)
        attacker = _Attacker(method, base, budgets)
        clean, results = attacker.run(jobs, split, nested=eval_cfg.eval_nested)
        curve = curve_points(jobs, results, clean, budgets)
        measurements = attacker.measure(split, clean, results, eval_cfg.eval_sanity_examples,
                                        target, LARGE_EPS.get(family),
                                        eval_cfg.eval_sanity_queries)
    autoattack = results.get(Job("autoattack", target))
    return Evaluation(
        curve=curve,
        sanity=sanity_checks(curve, measurements),
        robust_acc=worst_at(curve, target),
        clean_acc=_mean(clean),
        autoattack_acc=None if autoattack is None else _mean(autoattack),
        measurements=measurements,
    )


def attack_budgets(cfg: EvalConfig, target_eps: float,
                   surrogate: nn.Module | None = None) -> Budgets:
    """eval_restarts everywhere in `quick`; beyond it, eval_strong_restarts at the target ε
    (restarts are the evaluation's largest multiplier, and only the headline needs them)."""
    grid = AttackSettings(steps=cfg.eval_steps, restarts=cfg.eval_restarts,
                          eot=cfg.eval_eot_samples, square_queries=cfg.eval_square_queries,
                          autoattack_version=cfg.autoattack_version, seed=EVAL_SEED,
                          surrogate=surrogate)
    if cfg.eval_profile == "quick":
        return Budgets.uniform(grid)
    return Budgets(replace(grid, restarts=max(cfg.eval_restarts, cfg.eval_strong_restarts)), grid,
                   target_eps)


def l2_eps_scale(cfg: EvalConfig, input_dim: int) -> float:
    """ε₂ = scale·ε∞. Default √d/4, which gives the usual radii: MNIST 0.3 → 2.1,
    CIFAR-10 8/255 → 0.43."""
    return cfg.eval_l2_eps_scale or math.sqrt(input_dim) / 4


def plan(profile: str, eps_grid: tuple[float, ...], target_eps: float | None = None,
         l2_scale: float = 1.0, changes_inference: bool = False,
         has_surrogate: bool = False) -> list[Job]:
    """The attacks a profile runs, in curve order (cheap first within each ε); AutoAttack runs
    at `target_eps` (a grid value) in the standard and full profiles."""
    names = [a for a in GRID_ATTACKS[profile] if a != "transfer" or has_surrogate]
    linf = [a for a in names if ATTACKS.get(a).norm == "Linf"]
    l2 = [a for a in names if ATTACKS.get(a).norm == "L2"]
    jobs = []
    for eps in eps_grid:
        jobs += [Job(name, eps) for name in linf]
        if profile != "quick" and eps == target_eps:
            jobs.append(Job("autoattack", eps))
            if changes_inference:
                jobs.append(Job("autoattack", eps, "base"))
        jobs += [Job(name, eps * l2_scale) for name in l2]
    return jobs


def worst_case(results: Mapping[Job, torch.Tensor], clean: torch.Tensor,
               kinds: Collection[str] | None = None) -> dict[float, torch.Tensor]:
    """Per L∞ ε: correct clean and under every L∞ attack run at ε (only attacks of `kinds`, if
    given). Per example: robust only if every attack failed on it."""
    worst: dict[float, torch.Tensor] = {}
    for job, still_correct in results.items():
        attack = ATTACKS.get(job.attack)
        if attack.norm == "Linf" and (kinds is None or attack.kind in kinds):
            worst[job.eps] = worst.get(job.eps, clean) & still_correct
    return worst


def curve_points(jobs: list[Job], results: Mapping[Job, torch.Tensor], clean: torch.Tensor,
                 budgets: Budgets) -> list[CurvePoint]:
    """Clean, then per ε the jobs in order followed by the worst case."""
    n = len(clean)
    worst = worst_case(results, clean)
    last_linf = {job.eps: i for i, job in enumerate(jobs) if ATTACKS.get(job.attack).norm == "Linf"}
    points = [CurvePoint("clean", "none", 0.0, 0, 0, n, _mean(clean))]
    for i, job in enumerate(jobs):
        attack = ATTACKS.get(job.attack)
        steps, restarts = attack.budget(budgets.at(job))
        points.append(CurvePoint(job.attack, attack.norm, job.eps, steps, restarts, n,
                                 _mean(results[job]), job.path))
        if last_linf.get(job.eps) == i:
            points.append(CurvePoint("worst", "Linf", job.eps, 0, 0, n, _mean(worst[job.eps])))
    return points


def robustness_curve(net: nn.Module, split: Split, eps_grid: tuple[float, ...], pgd_steps: int,
                     pgd_restarts: int = 1, batch_size: int = 512) -> list[CurvePoint]:
    """The quick profile's curve without the sanity checks: clean, FGSM, PGD-L∞ and worst."""
    budgets = Budgets.uniform(AttackSettings(steps=pgd_steps, restarts=pgd_restarts))
    jobs = plan("quick", eps_grid)
    with eval_mode(net):
        clean, results = _Attacker(net, None, budgets, batch_size).run(jobs, split)
    return curve_points(jobs, results, clean, budgets)


def worst_at(points: list[CurvePoint], eps: float) -> float:
    """The worst-case accuracy of a curve at ε (the point closest to it)."""
    worst = [p for p in points if p.attack == "worst"]
    return min(worst, key=lambda p: abs(p.eps - eps)).accuracy


class _Attacker:
    """Runs evaluation attacks batch by batch, crafted on `method` (or on `base` for
    path="base") and always scored on `method`; keeps the largest `ball_excess` seen."""

    def __init__(self, method: nn.Module, base: nn.Module | None, budgets: Budgets,
                 batch_size: int = 512):
        self.method, self.base, self.budgets, self.batch_size = method, base, budgets, batch_size
        self.settings = budgets.strong  # the sanity measurements' reference budget
        self.excess = torch.zeros(())

    def run(self, jobs: list[Job], split: Split,
            nested: bool = True) -> tuple[torch.Tensor, dict[Job, torch.Tensor]]:
        """Clean correctness and, per job, per-example correctness under attack (bool [N]).

        The ε-balls are nested: an x_adv that fools the model at ε lies in every larger ball, so
        an example that an attack (on one path) fooled at ε counts as fooled by that attack at
        every larger ε and is not attacked there again; only the examples it has not fooled yet
        are. Each attack's accuracy is thus the best it achieved with any budget up to ε, and the
        worst case over attacks is unchanged except that it, too, never rises with ε.
        nested=False attacks every clean-correct example at every ε (the tests compare both).

        AutoAttack (kind "ensemble") only attacks the points every L∞ attack before it at its ε
        left robust (see the module docstring)."""
        clean = _correct_all(self.method, split, self.batch_size)
        results: dict[Job, torch.Tensor] = {}
        fooled: dict[tuple[str, str], torch.Tensor] = {}  # (attack, path) -> fooled at a smaller ε
        standing: dict[float, torch.Tensor] = {}  # L∞ ε -> robust to every attack run there so far
        for job in sorted(jobs, key=lambda j: j.eps):  # stable: plan order within an ε
            attack = ATTACKS.get(job.attack)
            series = (job.attack, job.path)
            fooled_before = fooled.get(series, torch.zeros_like(clean))
            candidates = clean & ~fooled_before if nested else clean
            if attack.kind == "ensemble":
                candidates = candidates & standing.get(job.eps, clean)
            results[job] = self.correct_under(job, split, candidates)
            fooled[series] = fooled_before | (clean & ~results[job])
            if attack.norm == "Linf":
                standing[job.eps] = standing.get(job.eps, clean) & results[job]
        return clean, {job: results[job] for job in jobs}

    def correct_under(self, job: Job, split: Split, candidates: torch.Tensor,
                      settings: AttackSettings | None = None) -> torch.Tensor:
        """Per example: still correct after the attack; only `candidates` are attacked (the
        others count as not correct)."""
        attack = ATTACKS.get(job.attack)
        crafting = self.base if job.path == "base" else self.method
        still_correct = torch.zeros_like(candidates)
        for idx in candidates.nonzero().squeeze(1).split(self.batch_size):
            x, y = split.x[idx], split.y[idx]
            x_adv = attack(crafting, x, y, job.eps, settings or self.budgets.at(job))
            excess = ball_excess(x_adv, x, attack.norm, job.eps).cpu()
            self.excess = torch.maximum(self.excess, excess)
            still_correct[idx] = correct(self.method, x_adv, y)
        return still_correct

    def accuracy(self, job: Job, split: Split) -> float:
        with eval_mode(self.method):
            clean = _correct_all(self.method, split, self.batch_size)
            return _mean(self.correct_under(job, split, clean))

    def measure(self, split: Split, clean: torch.Tensor, results: Mapping[Job, torch.Tensor],
                sanity_examples: int, target_eps: float, large_eps: float | None,
                square_queries: int) -> Measurements:
        """The sanity measurements (see trainables.sanity): the black-box gaps on every curve
        point, the others on the first `sanity_examples`. Square at the target ε only attacks
        the points every gradient attack left robust (the only ones where it can show a gap),
        so its power comes from all the curve's points at the cost of the robust ones."""
        subset, clean_subset = split.head(sanity_examples), clean[:sanity_examples]
        once = self._with(restarts=1)
        grid = sorted({job.eps for job in results if job.attack == "pgd"})
        pgd_by_eps = {eps: _mean(self.correct_under(Job("pgd", eps), subset, clean_subset, once))
                      for eps in grid}
        large = None if large_eps is None else _mean(self.correct_under(
            Job("pgd", large_eps), subset, clean_subset, once))
        usual = self.correct_under(Job("pgd", target_eps), subset, clean_subset)
        doubled = self.correct_under(Job("pgd", target_eps), subset, clean_subset, self._with(
            steps=2 * self.settings.steps, restarts=2 * self.settings.restarts))
        if Job("square", target_eps) not in results:
            whitebox = worst_case(results, clean, kinds={"gradient"})[target_eps]
            results = {**results, Job("square", target_eps): self.correct_under(
                Job("square", target_eps), split, whitebox, self._with(square_queries=square_queries))}
        return Measurements(
            num_classes=self._num_classes(subset),
            subset_clean_acc=_mean(clean_subset),
            unbounded_acc=self._unbounded_acc(subset, clean_subset),
            pgd_by_eps=pgd_by_eps,
            large_eps=large_eps,
            large_eps_acc=large,
            budget=Paired.of(usual, doubled),
            blackbox_gaps=blackbox_gaps(results, clean),
            logits_rel_diff=self._logits_rel_diff(subset) if self.settings.eot == 1 else None,
            zero_grad_fraction=self._zero_grad_fraction(subset),
            ball_excess=self.excess.item(),
        )

    def _with(self, **changes) -> AttackSettings:
        return replace(self.settings, **changes)

    @torch.no_grad()
    def _num_classes(self, subset: Split) -> int:
        return self.method(subset.x[:1]).shape[1]

    @torch.no_grad()
    def _logits_rel_diff(self, subset: Split) -> float:
        """Two passes over the same inputs; a deterministic model gives the same logits."""
        first, second = self.method(subset.x), self.method(subset.x)
        return ((first - second).abs().max() / (first.abs().max() + 1e-12)).item()

    def _zero_grad_fraction(self, subset: Split) -> float:
        """The fraction of input pixels (over the subset) whose CE gradient is exactly 0: a
        pixel no signed-gradient step moves. Per pixel, not per example: a clamp in `predict`
        zeroes part of every example's gradient and no example's whole gradient."""
        return _mean(input_grad(self.method, ce_loss, subset.x, subset.y) == 0)

    def _unbounded_acc(self, subset: Split, candidates: torch.Tensor) -> float:
        """PGD from x itself (no random start, which alone could land anywhere) at ε = 1."""
        still_correct = torch.zeros_like(candidates)
        for idx in candidates.nonzero().squeeze(1).split(self.batch_size):
            x, y = subset.x[idx], subset.y[idx]
            x_adv = pgd(self.method, x, y, 1.0, self.settings.steps, random_start=False,
                        eot=self.settings.eot)
            still_correct[idx] = correct(self.method, x_adv, y)
        return _mean(still_correct)


def blackbox_gaps(results: Mapping[Job, torch.Tensor], clean: torch.Tensor) -> tuple[Gap, ...]:
    """Per query or transfer attack run at an L∞ ε: the examples it fooled beyond the worst case
    over the gradient attacks there."""
    whitebox = worst_case(results, clean, kinds={"gradient"})
    return tuple(Gap(job.attack, job.eps, int((whitebox[job.eps] & ~still_correct).sum()),
                     len(clean))
                 for job, still_correct in results.items()
                 if ATTACKS.get(job.attack).kind in ("query", "transfer") and job.eps in whitebox)


def _correct_all(net: nn.Module, split: Split, batch_size: int) -> torch.Tensor:
    return torch.cat([correct(net, split.x[i:i + batch_size], split.y[i:i + batch_size])
                      for i in range(0, len(split), batch_size)])


def _mean(flags: torch.Tensor) -> float:
    return flags.float().mean().item() if len(flags) else float("nan")


__all__ = ["CurvePoint", "Evaluation", "Job", "PROFILES", "UPPER_BOUND_PROFILES", "accuracy", "evaluate_trial",
           "pgd_accuracy", "plan", "robustness_curve", "worst_at", "worst_case"]
