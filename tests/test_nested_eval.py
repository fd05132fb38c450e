"""The evaluation's nested ε-balls: an attack skips the examples it already fooled at a smaller ε.
On a model where every attack finds the exact worst case, that shortcut must give per example
exactly what attacking every example at every ε gives, while attacking fewer of them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.attacks import AttackSettings
from trainables.data import Split
from trainables.evaluate import _Attacker, plan, worst_case

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
    clean, results = _Attacker(counted, None, AttackSettings(steps=10, restarts=2)).run(
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

