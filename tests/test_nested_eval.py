"""The evaluation's nested ε-balls: an attack skips the examples it already fooled at a smaller ε.
On a model where every attack finds the exact worst case, that shortcut must give per example
exactly what attacking every example at every ε gives, while attacking fewer of them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import trainables.attacker as attacker_module
from trainables.attacks import AttackSettings
from trainables.attacks.autoattack import AutoAttackRun
from trainables.data import Split
from trainables.attacker import Attacker, Budgets
from trainables.evaluate import Job, curve_points, plan, worst_case

pytestmark = pytest.mark.usefixtures("one_thread")

GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


class Counted(nn.Module):
    """Counts the examples `net` is run on (the cost of an evaluation)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.examples = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.examples += len(x)
        return self.net(x)


@pytest.fixture(scope="module")
def two_digits(digits) -> Split:
    """Digits 3 and 8 of the test split, labelled 0 and 1."""
    test = digits.test
    keep = (test.y == 3) | (test.y == 8)
    return Split(test.x[keep], (test.y[keep] == 8).long())


@pytest.fixture(scope="module")
def linear(two_digits) -> nn.Module:
    """A two-class linear classifier. Its loss gradients (CE and margin) have one sign pattern
    in the whole ball, so FGSM, every PGD/CW start and AutoAttack reach the same corner: the
    exact worst case, whatever the random starts."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(two_digits.x[0].numel(), 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(50):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(two_digits.x), two_digits.y).backward()
        optimizer.step()
    return net.eval()


def evaluate(net: nn.Module, split: Split, nested: bool):
    counted = Counted(net)
    jobs = plan("standard", GRID)  # FGSM, PGD, CW at every ε (AutoAttack needs 4+ classes)
    torch.manual_seed(0)
    clean, results = Attacker(counted, None, Budgets.uniform(AttackSettings(steps=10, restarts=2))).run(
        jobs, split, nested=nested)
    return clean, results, counted.examples


def test_nested_balls_give_the_full_computation_at_less_cost(linear, two_digits):
    clean, nested, nested_cost = evaluate(linear, two_digits, nested=True)
    _, full, full_cost = evaluate(linear, two_digits, nested=False)
    assert 0.9 < clean.float().mean() and set(nested) == set(full)
    for job in full:
        assert torch.equal(nested[job], full[job]), job
    worst = worst_case(full, clean)
    # A real curve from robust to broken, so the shortcut had examples to skip.
    assert worst[GRID[0]].float().mean() > 0.5 > worst[GRID[-1]].float().mean()
    assert nested_cost < 0.8 * full_cost



def test_autoattack_runs_alone_on_every_clean_correct_point(linear, two_digits, monkeypatch):
    """AutoAttack is run as published, on every point classified correctly, whatever FGSM, PGD
    and CW found before it; its row is AutoAttack alone (here: a run that finds nothing), and
    the worst case still counts what the other attacks found."""
    seen = []

    def finds_nothing(net, x, y, eps, version, seed, batch_size, **progress):
        seen.append(len(x))
        return AutoAttackRun(x.clone(), {"apgd-ce": torch.zeros(len(x), dtype=torch.bool)},
                             frozenset())

    monkeypatch.setattr(attacker_module, "autoattack_cascade", finds_nothing)
    target = 0.1
    jobs = plan("standard", GRID, target)
    torch.manual_seed(0)
    clean, results = Attacker(linear, None, Budgets.uniform(AttackSettings(steps=10))).run(
        jobs, two_digits)
    assert seen == [int(clean.sum())]
    assert torch.equal(results[Job("autoattack", target)], clean)
    worst = worst_case(results, clean)[target]
    assert 0 < worst.sum() < clean.sum()  # the other attacks broke points AutoAttack did not


def test_restarts_are_spent_at_the_target_eps_only():
    """The strong budget (restarts) at the target ε, the grid's elsewhere; each curve point
    records the budget it was measured with."""
    strong, grid = AttackSettings(steps=20, restarts=5), AttackSettings(steps=20, restarts=1)
    budgets = Budgets(strong, grid, target_eps=0.1)
    jobs = [Job("pgd", 0.05), Job("pgd", 0.1), Job("cw", 0.1), Job("pgd-l2", 0.1)]
    assert [budgets.at(job).restarts for job in jobs] == [1, 5, 5, 1]
    results = {job: torch.tensor([True, False]) for job in jobs}
    curve = curve_points(jobs, results, torch.tensor([True, True]), budgets)
    restarts = {(p.attack, p.eps): p.restarts for p in curve if p.attack not in ("clean", "worst")}
    assert restarts == {("pgd", 0.05): 1, ("pgd", 0.1): 5, ("cw", 0.1): 5, ("pgd-l2", 0.1): 1}


def test_each_attack_says_what_it_left_correct(linear, two_digits):
    """A long evaluation is not silent: one line per attack, whose count of points still
    correct is the attack's own result (the nested series attacks fewer points as ε grows)."""
    lines = []
    jobs = plan("standard", GRID)
    torch.manual_seed(0)
    clean, results = Attacker(linear, None, Budgets.uniform(AttackSettings(steps=10)), say=lines.append).run(
        jobs, two_digits)
    assert len(lines) == len(jobs)
    ordered = sorted(jobs, key=lambda j: j.eps)
    for line, job in zip(lines, ordered):
        assert f"{job.attack} at ε {job.eps:.4g}: {int(results[job].sum())} of " in line, line
    last_pgd = [line for line, job in zip(lines, ordered) if job.attack == "pgd"][-1]
    assert f"of {int(clean.sum())} attacked" not in last_pgd  # fewer attacked at the largest ε
