"""Runs an evaluation's attack jobs (`trainables.evaluate.plan`) batch by batch, with the budget
each curve point gets (`Budgets`), and takes the sanity measurements on a subset of the points
(`trainables.sanity.Measurements`); `trainables.evaluate` turns what it finds into the curve,
the worst case and the flags."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

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
from trainables.attacks.autoattack import autoattack_cascade
from trainables.config import EvalConfig
from trainables.data import Split
from trainables.kept_attacks import KeptAttacks
from trainables.outcomes import Job, blackbox_gaps, fraction, pad, square_stage_gain, worst_case
from trainables.sanity import BALL_TOL, Measurements, Paired

UNBOUNDED_EPS = 1.0  # the whole [0, 1] box


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


class Attacker:
    """Runs evaluation attacks batch by batch, crafted on `method` (or on `base` for
    path="base") and always scored on `method`. Keeps, on the device, the largest distance of
    an x_adv outside its ball or the box: for the project's own (projecting) attacks, where a
    distance is a bug (`measure` raises), and for the package's attacks, whose x_adv the
    `adv_in_ball` check judges; and the names of AutoAttack's own checks that warned."""

    def __init__(self, method: nn.Module, base: nn.Module | None, budgets: Budgets,
                 batch_size: int = 512, say: Callable[[str], None] | None = None,
                 kept: KeptAttacks = KeptAttacks(None)):
        self.method, self.base, self.budgets, self.batch_size, self.say = method, base, budgets, batch_size, say
        self.kept = kept  # the attacks an interrupted run of this evaluation finished
        self.settings = budgets.strong  # the sanity measurements' reference budget
        self.excess: dict[bool, torch.Tensor] = {}  # projects -> largest excess
        self.autoattack_warned: frozenset[str] | None = None  # None: AutoAttack did not run

    def run(self, jobs: list[Job], split: Split,
            nested: bool = True) -> tuple[torch.Tensor, dict[Job, torch.Tensor]]:
        """Clean correctness and, per job, per-example correctness under attack (bool [N]); for
        AutoAttack on `predict`, also one entry per stage of its cascade (role "autoattack").

        The ε-balls are nested: an x_adv that fools the model at ε lies in every larger ball, so
        an example that an attack (on one path) fooled at ε counts as fooled by that attack at
        every larger ε and is not attacked there again; only the examples it has not fooled yet
        are. Each attack's accuracy is thus the best it achieved with any budget up to ε.
        nested=False attacks every clean-correct example at every ε (the tests compare both)."""
        clean = correct_all(self.method, split, self.batch_size)
        results: dict[Job, torch.Tensor] = {}
        fooled: dict[tuple[str, str], torch.Tensor] = {}  # (attack, path) -> fooled at a smaller ε
        for done, job in enumerate(sorted(jobs, key=lambda j: j.eps), 1):  # stable: plan order within an ε
            series = (job.attack, job.path)
            fooled_before = fooled.get(series, torch.zeros_like(clean))
            candidates = clean & ~fooled_before if nested else clean
            started, name = time.monotonic(), f"{done:03d}-{job.attack}-{job.path}-{job.eps:g}"
            finished = self.kept.resume_attack(name, clean.device)  # by the run this one continues
            if finished is not None:
                found, self.excess, self.autoattack_warned = finished
            elif job.attack == "autoattack" and job.path == "predict":
                found = self.autoattack(job, split, candidates, name)
            else:
                found = {job: self.correct_under(job, split, candidates)}
            if finished is None:
                self.kept.keep_attack(name, found, self.excess, self.autoattack_warned)
            results.update(found)
            fooled[series] = fooled_before | (clean & ~results[job])
            if self.say is not None:
                path = " (crafted on the base classifier)" if job.path == "base" else ""
                self.say(f"attack {done}/{len(jobs)}: {job.attack}{path} at ε {job.eps:.4g}: "
                         f"{int(results[job].sum())} of {int(candidates.sum())} attacked points still correct "
                         + ("(finished by the interrupted run)" if finished is not None
                            else f"({time.monotonic() - started:.0f} s)"))
        return clean, results

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
            still_correct[idx] = self._score(job, x_adv, x, y)
        return still_correct

    def autoattack(self, job: Job, split: Split, candidates: torch.Tensor, name: str) -> dict[Job, torch.Tensor]:
        """AutoAttack as published on all the candidates: per example still correct (`job`),
        and per stage of its cascade (role "autoattack") the examples that stage did not break.
        Where the cascade stands is kept after each stage, under `name`."""
        settings = self.budgets.at(job)
        idx = candidates.nonzero().squeeze(1)
        kept = self.kept.load_stages(f"{name}-stages", split.x[idx])
        if kept is not None and self.say is not None:
            self.say(f"autoattack at ε {job.eps:.4g}: {', '.join(kept['broken_by'])} finished by the interrupted run")
        run = autoattack_cascade(self.method, split.x[idx], split.y[idx], job.eps,
                                 settings.autoattack_version, settings.seed, self.batch_size,
                                 continue_from=kept, after_stage=self._stage_done(job, name))
        self.autoattack_warned = (self.autoattack_warned or frozenset()) | run.warned
        found = {job: torch.zeros_like(candidates)}
        found[job][idx] = self._score(job, run.x_adv, split.x[idx], split.y[idx])
        for stage, broken in run.broken_by.items():
            survived = torch.ones_like(candidates)
            survived[idx] = ~broken
            found[Job(stage, job.eps, role="autoattack")] = survived
        return found

    def _stage_done(self, job: Job, name: str) -> Callable[[str, dict[str, Any]], None]:
        """Keeps where AutoAttack's cascade stands after a stage, and says what the stage did."""
        started = time.monotonic()

        def done(stage: str, state: dict[str, Any]) -> None:
            nonlocal started
            self.kept.save_stages(f"{name}-stages", state)
            if self.say is not None:
                self.say(f"autoattack at ε {job.eps:.4g}, {stage}: broke {int(state['broken_by'][stage].sum())}, "
                         f"{int(state['robust'].sum())} points still correct ({time.monotonic() - started:.0f} s)")
            started = time.monotonic()

        return done

    def _score(self, job: Job, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        attack = ATTACKS.get(job.attack)
        excess = ball_excess(x_adv, x, attack.norm, job.eps)
        largest = self.excess.get(attack.projects)
        self.excess[attack.projects] = excess if largest is None else torch.maximum(largest, excess)
        return correct(self.method, x_adv, y)

    def accuracy(self, job: Job, split: Split) -> float:
        with eval_mode(self.method):
            clean = correct_all(self.method, split, self.batch_size)
            return fraction(self.correct_under(job, split, clean))

    def measure(self, split: Split, clean: torch.Tensor, results: Mapping[Job, torch.Tensor],
                cfg: EvalConfig, target_eps: float,
                large_eps: float | None) -> tuple[Measurements, dict[Job, torch.Tensor]]:
        """The sanity measurements (see trainables.sanity), and what their attacks found (per
        job, still correct, over all the points: the worst case counts it). The black-box gaps
        use every point of the curve, the others the first `eval_sanity_examples`. Without a
        Square run (the quick profile), Square at the target ε attacks the points every gradient
        attack left robust (the only ones where it can show a gap)."""
        n_subset = min(cfg.eval_sanity_examples, len(clean))
        subset, clean_subset = split.head(n_subset), clean[:n_subset]
        once = self._with(restarts=1)
        grid = sorted({job.eps for job in results if job.attack == "pgd" and job.role == "curve"})
        on_subset = {Job(name, eps, role="unnested"): self.correct_under(
            Job(name, eps), subset, clean_subset, once) for name in ("fgsm", "pgd") for eps in grid}
        if large_eps is not None:
            on_subset[Job("pgd", large_eps, role="large")] = self.correct_under(
                Job("pgd", large_eps), subset, clean_subset, once)
        on_subset[Job("pgd", UNBOUNDED_EPS, role="unbounded")] = self._unbounded(subset, clean_subset)
        on_subset[Job("pgd", target_eps, role="usual")] = self.correct_under(
            Job("pgd", target_eps), subset, clean_subset)
        on_subset[Job("pgd", target_eps, role="doubled")] = self.correct_under(
            Job("pgd", target_eps), subset, clean_subset,
            self._with(steps=2 * self.settings.steps, restarts=2 * self.settings.restarts))
        role = {job.role: still_correct for job, still_correct in on_subset.items()}
        found = {job: pad(still_correct, len(clean)) for job, still_correct in on_subset.items()}
        if not any(job.attack == "square" and job.eps == target_eps for job in results):
            whitebox = worst_case({**results, **found}, clean, kinds={"gradient"})[target_eps]
            # The points it did not attack were broken already: not by Square.
            found[Job("square", target_eps, role="blackbox")] = ~whitebox | self.correct_under(
                Job("square", target_eps), split, whitebox,
                self._with(square_queries=cfg.eval_sanity_queries))
        self._check_own_projections()
        measurements = Measurements(
            num_classes=self._num_classes(subset),
            subset_clean_acc=fraction(clean_subset),
            unbounded_acc=fraction(role["unbounded"]),
            unnested_by_eps={name: {job.eps: fraction(still_correct) for job, still_correct
                                    in on_subset.items() if job.role == "unnested" and job.attack == name}
                             for name in ("fgsm", "pgd")},
            curve_nested=cfg.eval_nested,
            large_eps=large_eps,
            large_eps_acc=fraction(role["large"]) if "large" in role else None,
            budget=Paired.of(role["usual"], role["doubled"]),
            blackbox_gaps=blackbox_gaps({**results, **found}, clean),
            target_eps=target_eps, autoattack_square=square_stage_gain(results, target_eps),
            logits_rel_diff=self._logits_rel_diff(subset) if self.settings.eot == 1 else None,
            zero_grad_fraction=self._zero_grad_fraction(subset),
            ball_excess=self.excess[False].item() if False in self.excess else None,
            autoattack_warned=self.autoattack_warned,
        )
        return measurements, found

    def _check_own_projections(self) -> None:
        """The project's attacks project onto the ball and the box: an x_adv outside is a bug in
        them, not a finding about the model, so it stops the evaluation."""
        if True in self.excess and self.excess[True].item() > BALL_TOL:
            raise AssertionError(f"an attack of trainables.attacks returned an x_adv "
                                 f"{self.excess[True].item():.2g} outside its ε-ball or [0, 1]")

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
        return fraction(input_grad(self.method, ce_loss, subset.x, subset.y) == 0)

    def _unbounded(self, subset: Split, candidates: torch.Tensor) -> torch.Tensor:
        """PGD from x itself (no random start, which alone could land anywhere) at ε = 1."""
        still_correct = torch.zeros_like(candidates)
        for idx in candidates.nonzero().squeeze(1).split(self.batch_size):
            x, y = subset.x[idx], subset.y[idx]
            x_adv = pgd(self.method, x, y, UNBOUNDED_EPS, self.settings.steps, random_start=False,
                        eot=self.settings.eot)
            still_correct[idx] = self._score(Job("pgd", UNBOUNDED_EPS), x_adv, x, y)
        return still_correct


def correct_all(net: nn.Module, split: Split, batch_size: int) -> torch.Tensor:
    return torch.cat([correct(net, split.x[i:i + batch_size], split.y[i:i + batch_size])
                      for i in range(0, len(split), batch_size)])
