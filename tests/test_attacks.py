"""The evaluation attacks: every registered attack honours the attack contract on a small trained
model; PGD and AutoAttack break an undefended model; the restart cascade and the per-example
worst case are right on hand-made cases; BPDA and EOT do what they claim."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.attacks import (
    ATTACKS,
    THREAT_MODELS,
    AttackSettings,
    L2Ball,
    ce_loss,
    correct,
    fgsm,
    input_grad,
    margin_loss,
    pgd,
    restart_until_fooled,
)
from trainables.attacks.autoattack import _InputGradOnly
from trainables.config import EvalConfig
from trainables.attacker import Budgets
from trainables.evaluate import (
    Job,
    curve_points,
    evaluate_trial,
    plan,
    robustness_curve,
    worst_case,
)
from trainables.trial import Protocol_

from conftest import train_method
from planted import Purified, Quantized

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = {"Linf": 0.3, "L2": 1.5}








@pytest.fixture(scope="module")
def standard(digits):
    return train_method(digits, "standard", epochs=5)


@pytest.fixture(scope="module")
def surrogate(digits):
    return train_method(digits, "standard", epochs=3, seed=1)


@pytest.fixture(scope="module")
def batch(digits):
    return digits.test.x[:48], digits.test.y[:48]


def test_registry_lists_the_evaluation_attacks():
    assert set(ATTACKS.names()) == {"fgsm", "pgd", "cw", "pgd-l2", "mim", "autoattack", "square",
                                    "transfer", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t"}
    with pytest.raises(KeyError, match="known: apgd-ce, apgd-dlr, apgd-t, autoattack"):
        ATTACKS.get("deepfool")


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_contract(name, standard, surrogate, batch):
    """In the ball and the box, per-example output, more loss than clean, the model's mode given
    back (here: training), parameters' .grad untouched (FAB inside AutoAttack calls .backward())."""
    attack = ATTACKS.get(name)
    eps = EPS[attack.norm]
    x, y = batch
    settings = AttackSettings(steps=10, restarts=2, square_queries=200, surrogate=surrogate)
    standard.train()
    surrogate.train()
    sentinel = [torch.full_like(p, 7.0) for p in standard.parameters()]
    for p, s in zip(standard.parameters(), sentinel):
        p.grad = s.clone()
    try:
        x_adv = attack(standard, x, y, eps, settings)
        assert standard.training and surrogate.training
        assert all(torch.equal(p.grad, s) for p, s in zip(standard.parameters(), sentinel))
    finally:
        standard.zero_grad(set_to_none=True)
        standard.eval()
        surrogate.eval()
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert THREAT_MODELS[attack.norm](eps).distance(x_adv, x).max() <= eps + 1e-5
    with torch.no_grad():
        assert ce_loss(standard(x_adv), y).mean() > ce_loss(standard(x), y).mean() + 0.5


def test_eval_mode_is_kept_too(standard, batch):
    x, y = batch
    pgd(standard, x, y, 0.1, 2)
    assert not standard.training


def test_pgd_and_autoattack_break_a_standard_model(digits, standard):
    """An undefended digits classifier is at ~0% at ε = 0.3 under PGD-20 and AutoAttack."""
    test = digits.test.head(100)
    curve = robustness_curve(standard, test, (0.3,), pgd_steps=20)
    point = {p.attack: p.accuracy for p in curve}
    assert point["clean"] > 0.85
    assert point["pgd"] <= 0.02 and point["worst"] <= 0.02
    x_adv = ATTACKS.get("autoattack")(standard, test.x, test.y, 0.3, AttackSettings())
    assert correct(standard, x_adv, test.y).float().mean() <= 0.02


def test_autoattack_sees_a_model_whose_backward_reaches_the_input_only(standard, batch):
    """pyautoattack's FAB calls .backward(); through the wrapper only the input gets a gradient
    (the contract test above cannot reach FAB: APGD already fools every point)."""
    x, _ = batch
    x = x.clone().requires_grad_(True)
    standard.zero_grad(set_to_none=True)  # training left its last gradients there
    _InputGradOnly(standard)(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in standard.parameters())


def test_worst_case_is_per_example():
    """Two attacks that each fool a different half: each alone leaves 50%, together 25%
    (the clean-wrong example never counts); the L2 attack is not part of the L∞ worst case."""
    clean = torch.tensor([True, True, True, False])
    results = {
        Job("fgsm", 0.1): torch.tensor([True, False, True, False]),
        Job("pgd", 0.1): torch.tensor([False, True, True, False]),
        Job("pgd-l2", 0.1): torch.tensor([False, False, False, False]),
    }
    assert worst_case(results, clean)[0.1].tolist() == [False, False, True, False]
    curve = curve_points(list(results), results, clean, Budgets.uniform(AttackSettings()))
    accuracy = {p.attack: p.accuracy for p in curve}
    assert accuracy == {"clean": 0.75, "fgsm": 0.5, "pgd": 0.5, "worst": 0.25, "pgd-l2": 0.0}


def test_restarts_keep_the_first_success_and_only_attack_robust_points():
    """Attempt k fools only example k: after 3 attempts every example is fooled, each by its own
    attempt, and each attempt only saw the examples still robust."""
    judge = nn.Identity()  # the "logits" are the inputs: class = argmax of the two features
    x = torch.tensor([[1.0, 0.0]] * 3)
    y = torch.zeros(3, dtype=torch.long)
    seen = []

    def attack(xs, ys):
        seen.append(len(xs))
        out = xs.clone()
        out[0] = torch.tensor([0.0, 1.0 + len(seen)])  # fools the first still-robust example
        return out

    x_adv = restart_until_fooled(attack, judge, x, y, restarts=5)
    assert seen == [3, 2, 1]
    assert x_adv[:, 1].tolist() == [2.0, 3.0, 4.0]


def test_margin_loss_is_positive_iff_misclassified():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 0])
    assert margin_loss(logits, y).tolist() == [-1.0, 3.0]


def test_l2_ball_projection_and_start():
    ball = L2Ball(0.5)
    x = torch.full((4, 1, 8, 8), 0.5)
    far = ball.project(x + 3 * torch.randn_like(x), x)
    assert torch.allclose(ball.distance(far, x), torch.full((4,), 0.5), atol=1e-5)
    assert (ball.distance(ball.random_init(x), x) <= 0.5 + 1e-6).all()


def test_pgd_keeps_its_signature_and_batches_restarts(standard, batch):
    x, y = batch
    x_adv = pgd(standard, x, y, 0.1, 5, None, 3, True, ce_loss)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert torch.equal(fgsm(standard, x, y, 0.0), x)


def test_eot_averages_gradients_over_samples(standard, batch):
    """With a randomised net, eot=K is the mean of K single-sample gradients (same noise)."""
    x, y = batch

    def noisy(inputs):
        return standard(inputs + 0.05 * torch.randn_like(inputs))

    torch.manual_seed(3)
    averaged = input_grad(noisy, ce_loss, x, y, eot=3)
    torch.manual_seed(3)
    singles = [input_grad(noisy, ce_loss, x, y) for _ in range(3)]
    assert torch.allclose(averaged, sum(singles) / 3, atol=1e-6)


def test_bpda_attack_through_predict_beats_attacking_the_base(digits, standard):
    """PGD through predict (with BPDA) is at least as strong as PGD on the base classifier with
    the defense applied afterwards; without BPDA the gradient is zero and PGD is powerless."""
    x, y = digits.test.x[:100], digits.test.y[:100]
    defended = Quantized(standard.model, straight_through=True)
    masked = Quantized(standard.model, straight_through=False)
    torch.manual_seed(0)
    adaptive = correct(defended, pgd(defended, x, y, 0.2, 20), y).float().mean()
    base_then_defense = correct(defended, pgd(standard.model, x, y, 0.2, 20), y).float().mean()
    assert adaptive <= base_then_defense + 0.02
    assert input_grad(defended, ce_loss, x, y).abs().amax(dim=(1, 2, 3)).gt(0).all()
    assert input_grad(masked, ce_loss, x, y).abs().max() == 0
    assert correct(masked, pgd(masked, x, y, 0.2, 20), y).float().mean() > adaptive + 0.3


def test_adaptive_evaluation_reports_predict_and_base_paths(digits, standard):
    """A method that changes inference: AutoAttack through predict (BPDA) and crafted on the
    base classifier, both scored on predict and both in the worst case."""
    defended = Quantized(standard.model, straight_through=True)
    config = EvalConfig(eval_profile="standard", eval_examples=20, eval_sanity_examples=20)
    evaluation = evaluate_trial(defended, digits.test, Protocol_(0.3, 0.3, (0.3,)), config,
                                "mnist-like")
    autoattack = {p.path: p.accuracy for p in evaluation.curve if p.attack == "autoattack"}
    assert set(autoattack) == {"predict", "base"}
    assert evaluation.autoattack_acc == autoattack["predict"] <= 0.05
    assert evaluation.robust_acc <= min(autoattack.values())
    assert {p.attack for p in evaluation.curve} == {"clean", "fgsm", "pgd", "cw", "autoattack",
                                                    "worst"}


def test_profiles_plan_their_attacks():
    grid = (0.1, 0.3)
    names = lambda jobs: sorted({j.attack for j in jobs})  # noqa: E731
    assert names(plan("quick", grid, 0.3)) == ["fgsm", "pgd"]
    standard_jobs = plan("standard", grid, 0.3)
    assert names(standard_jobs) == ["autoattack", "cw", "fgsm", "pgd"]
    assert [j.eps for j in standard_jobs if j.attack == "autoattack"] == [0.3]
    assert names(plan("full", grid, 0.3)) == ["autoattack", "cw", "fgsm", "mim", "pgd", "pgd-l2",
                                              "square"]
    assert "transfer" in names(plan("full", grid, 0.3, has_surrogate=True))
    l2_jobs = [j for j in plan("full", grid, 0.3, l2_scale=2.0) if j.attack == "pgd-l2"]
    assert [j.eps for j in l2_jobs] == [0.2, 0.6]
    adaptive = plan("standard", grid, 0.3, changes_inference=True)
    assert {j.path for j in adaptive if j.attack == "autoattack"} == {"predict", "base"}


class Ridge(nn.Module):
    """One input pixel x; class 1 ("fooled") only on a narrow ridge 0.4 < x < 0.6, and the loss
    of class 0 rises towards the ridge's top at 0.5. Signed steps of 0.15 from 0.3 go 0.45
    (fooled), 0.6 (not), 0.45, 0.6: the last iterate is worse than an earlier one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ridge = 0.5 - 50 * (x.flatten(1)[:, :1] - 0.5) ** 2
        return torch.cat([torch.zeros_like(ridge), ridge], dim=1)


def test_pgd_returns_the_best_iterate_not_the_last():
    x, y = torch.full((2, 1), 0.3), torch.zeros(2, dtype=torch.long)
    settings = dict(eps=0.5, steps=4, step_size=0.15, random_start=False)
    last = pgd(Ridge(), x, y, keep_best=False, **settings)
    best = pgd(Ridge(), x, y, **settings)
    assert last.flatten().tolist() == pytest.approx([0.6, 0.6])
    assert correct(Ridge(), last, y).all()
    assert best.flatten().tolist() == pytest.approx([0.45, 0.45])
    assert not correct(Ridge(), best, y).any()
    two_restarts = pgd(Ridge(), x, y, restarts=2, **settings)
    assert not correct(Ridge(), two_restarts, y).any()


def test_attack_through_an_imt_like_predict_is_at_least_the_base_transfer(digits, standard):
    """PGD through predict (BPDA over the purification) fools at least as many points as PGD
    crafted on the base model and scored on predict (the transfer the papers report), within a
    sign test's noise; the purification kept in the graph is what ATLD's old predict did, and is
    the weaker attack."""
    x, y = digits.test.x[:200], digits.test.y[:200]
    defended = Purified(standard.model, straight_through=True)
    in_graph = Purified(standard.model, straight_through=False)
    torch.manual_seed(0)
    through = correct(defended, pgd(defended, x, y, 0.2, 20), y)
    transfer = correct(defended, pgd(standard.model, x, y, 0.2, 20), y)
    masked = correct(defended, pgd(in_graph, x, y, 0.2, 20), y)
    only_transfer, only_through = int((through & ~transfer).sum()), int((transfer & ~through).sum())
    assert only_transfer - only_through <= 2 * (only_transfer + only_through) ** 0.5
    assert input_grad(in_graph, ce_loss, x, y).eq(0).float().mean() > 0.3
    assert masked.float().mean() > through.float().mean() + 0.05


def test_trades_adversary_takes_probabilities_as_its_target():
    """TRADES' adversary passes the clean probabilities, not labels, to the gradient probe."""
    from trainables.methods.trades import trades_adversary

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10)).eval()
    x = torch.rand(8, 1, 4, 4)
    x_adv = trades_adversary(net, x, 0.1, 3, None)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(x_adv, x)
