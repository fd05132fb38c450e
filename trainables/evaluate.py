"""Robustness curves, the evaluation profiles, and the sanity measurements of a trial.

Profiles (`EvalConfig.eval_profile`; `standard` is the default), each adding to the one before:
    quick     clean, FGSM and PGD-L∞ (eval_steps, eval_restarts) at every ε of the grid
    standard  + CW-L∞ at every ε; at the target ε PGD and CW get max(eval_restarts,
              eval_strong_restarts) restarts, and AutoAttack (`autoattack_version`) runs as
              published on every evaluation point
    full      + MIM, Square (eval_square_queries) and PGD-L2 (ε₂ = scale·ε) at every ε
Which attack runs on the grid in which profile is the attack registry's (`grid_attacks`). Given a
`surrogate`, every profile adds a transfer attack (PGD on it, scored on the method) at every ε;
`run_trial` gives one in standard and full (a short PGD-trained model, `trainables.trial`).

A curve row named after an attack holds that attack alone. `autoattack` is AutoAttack alone, on
all the points; which of its stages (APGD-CE, APGD-T, FAB-T, Square) broke each point is kept
(`Evaluation.autoattack_broken`). The row `worst` at ε, and `robust_acc` at the target ε, count
an example robust only if it is classified correctly and no attack broke it at any ε' ≤ ε: under
L∞ balls an x_adv found at ε' lies in every larger ball. "No attack" means every attack that ran:
the curve's, AutoAttack's stages, and the sanity measurements' (doubled-budget PGD, the unnested
series, the black-box Square), which only report on the side what they found.

Attacks are given the method itself, so they differentiate through its full `predict` (with the
method's `bpda` steps, and EOT with eval_eot_samples > 1). A method whose `predict` is not
`model(x)` says so with `changes_inference = True`; AutoAttack is then also crafted on the base
classifier `method.model` and scored on `predict` (path="base": the non-adaptive evaluation the
papers report), and that counts in the worst case too.

Attacks only run on the examples classified correctly without attack: the others are
non-robust at every ε anyway (the adversary may return x itself).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch
from torch import nn

from trainables.attacks import (
    ATTACKS,
    AttackSettings,
    eval_mode,
    grid_attacks,
)
from trainables.config import PROFILES, EvalConfig, check_profile
from trainables.data import Split
from trainables.attacker import Attacker, Budgets, correct_all
from trainables.kept_attacks import KeptAttacks
from trainables.protocol import CurvePoint, Protocol_
from trainables.outcomes import Job, fraction, per_example, worst_at, worst_case
from trainables.sanity import LARGE_EPS, Measurements, sanity_checks

# Profiles without AutoAttack: their robust accuracy is an upper bound, labelled so wherever shown.
UPPER_BOUND_PROFILES = ("quick",)
EVAL_SEED = 0  # every trial is attacked with the same random starts


@dataclass(frozen=True)
class Evaluation:
    curve: list[CurvePoint]
    sanity: dict[str, bool | None]  # trainables.sanity.CHECKS plus "trusted"
    robust_acc: float  # worst case at the target ε (see the module docstring)
    clean_acc: float
    autoattack_acc: float | None  # AutoAttack alone on `predict` at the target ε; None in `quick`
    measurements: Measurements
    # AutoAttack's stage -> the points it broke at the target ε (each point counted by the first
    # stage of the cascade that broke it); empty in `quick`.
    autoattack_broken: dict[str, int]
    # Per test point and job, whether the model was still right (per_example): what a benchmark's
    # leaderboard is computed from.
    examples: dict[str, Any] = field(default_factory=dict)
    # CPU-seconds an interrupted run of this evaluation had spent on the attacks it kept and this
    # run read back (0 when nothing was kept): the evaluation's cost is this run's plus these.
    earlier_cpu_s: float = 0.0


def accuracy(net: nn.Module, split: Split, batch_size: int = 512) -> float:
    with eval_mode(net):
        return correct_all(net, split, batch_size).float().mean().item()


def pgd_accuracy(net: nn.Module, split: Split, eps: float, steps: int, restarts: int = 1, batch_size: int = 512) -> float:
    settings = AttackSettings(steps=steps, restarts=restarts)
    return Attacker(net, net, Budgets.uniform(settings), batch_size).accuracy(Job("pgd", eps), split)


def evaluate_trial(method: nn.Module, test_split: Split, protocol: Protocol_,
                   eval_cfg: EvalConfig, family: str,
                   surrogate: nn.Module | None = None, say: Callable[[str], None] | None = None) -> Evaluation:
    """The final evaluation of a trial on `eval_examples` test points: the profile's curve, the
    sanity measurements on the first `eval_sanity_examples` of them, and the checks' flags.
    `surrogate`: the network the transfer attack is crafted on (any module mapping [0, 1] inputs
    to logits, e.g. a restored method); None: no transfer attack. `say`: told a line per attack."""
    check_profile(eval_cfg.eval_profile)
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
        kept = KeptAttacks.of(eval_cfg.eval_progress_dir, (method, surrogate), (split.x, split.y),
                              [jobs, budgets, replace(eval_cfg, eval_progress_dir="", eval_surrogate_cache=""),
                               protocol, family, EVAL_SEED])
        attacker = Attacker(method, base, budgets, say=say, kept=kept)
        clean, results = attacker.run(jobs, split, nested=eval_cfg.eval_nested)
        if say is not None:
            say("sanity measurements (unnested, doubled and unbounded PGD, black-box Square)")
        measurements, found = attacker.measure(split, clean, results, eval_cfg, target,
                                               LARGE_EPS.get(family))
    results = {**results, **found}
    curve = curve_points(jobs, results, clean, budgets)
    autoattack = results.get(Job("autoattack", target))
    return Evaluation(
        curve=curve,
        sanity=sanity_checks(curve, measurements),
        robust_acc=worst_at(curve, target),
        clean_acc=fraction(clean),
        autoattack_acc=None if autoattack is None else fraction(autoattack),
        measurements=measurements,
        autoattack_broken={job.attack: int((clean & ~still_correct).sum())
                           for job, still_correct in results.items() if job.role == "autoattack"},
        examples=per_example(clean, results),
        earlier_cpu_s=kept.earlier_cpu_s,
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
    names = [a for a in grid_attacks(profile) if a != "transfer" or has_surrogate]
    linf = [a for a in names if ATTACKS.get(a).norm == "Linf"]
    l2 = [a for a in names if ATTACKS.get(a).norm == "L2"]
    jobs = []
    for eps in eps_grid:
        jobs += [Job(name, eps) for name in linf]
        if profile not in UPPER_BOUND_PROFILES and eps == target_eps:
            jobs.append(Job("autoattack", eps))
            if changes_inference:
                jobs.append(Job("autoattack", eps, "base"))
        jobs += [Job(name, eps * l2_scale) for name in l2]
    return jobs


def curve_points(jobs: list[Job], results: Mapping[Job, torch.Tensor], clean: torch.Tensor,
                 budgets: Budgets) -> list[CurvePoint]:
    """Clean, then per ε the jobs in order followed by the worst case (over every result)."""
    n = len(clean)
    worst = worst_case(results, clean)
    last_linf = {job.eps: i for i, job in enumerate(jobs) if ATTACKS.get(job.attack).norm == "Linf"}
    points = [CurvePoint("clean", "none", 0.0, 0, 0, n, fraction(clean))]
    for i, job in enumerate(jobs):
        attack = ATTACKS.get(job.attack)
        steps, restarts = attack.budget(budgets.at(job))
        points.append(CurvePoint(job.attack, attack.norm, job.eps, steps, restarts, n,
                                 fraction(results[job]), job.path))
        if last_linf.get(job.eps) == i:
            points.append(CurvePoint("worst", "Linf", job.eps, 0, 0, n, fraction(worst[job.eps])))
    return points


def robustness_curve(net: nn.Module, split: Split, eps_grid: tuple[float, ...], pgd_steps: int,
                     pgd_restarts: int = 1, batch_size: int = 512) -> list[CurvePoint]:
    """The quick profile's curve without the sanity checks: clean, FGSM, PGD-L∞ and worst."""
    budgets = Budgets.uniform(AttackSettings(steps=pgd_steps, restarts=pgd_restarts))
    jobs = plan("quick", eps_grid)
    with eval_mode(net):
        clean, results = Attacker(net, None, budgets, batch_size).run(jobs, split)
    return curve_points(jobs, results, clean, budgets)


__all__ = ["CurvePoint", "Evaluation", "Job", "PROFILES", "UPPER_BOUND_PROFILES", "accuracy",
           "check_profile", "evaluate_trial", "pgd_accuracy", "plan", "robustness_curve",
           "worst_at", "worst_case"]
