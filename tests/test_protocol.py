"""Each dataset's ε protocol: digits have their own (target 0.1), other data their family's; the
search's training ε follows the dataset's target."""
import math

import optuna
import pytest

from orchestrator.sweep.space import first_points, search_space, space_dimensions
from trainables import TrialConfig, run_trial
from trainables.data import DATASET_PROTOCOL, FAMILY_PROTOCOL, eps_scale
from trainables.trial import resolve_protocol

DIGITS_GRID = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)  # the curve's ε, without 0


def test_digits_resolve_to_their_own_target_grid_and_training_eps():
    protocol = resolve_protocol(TrialConfig(method="madry"), "mnist-like")
    assert protocol.target_eps == 0.1 and protocol.train_eps == 0.1
    assert protocol.eps_grid == pytest.approx(DIGITS_GRID)


def test_other_mnist_like_data_keep_mnists_protocol():
    config = TrialConfig.from_flat({"method": "madry", "dataset": "npz", "data_dir": "x.npz"})
    protocol = resolve_protocol(config, "mnist-like")
    assert protocol.target_eps == 0.3 and protocol.train_eps == 0.3
    assert protocol.eps_grid == pytest.approx((0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4))


def test_what_the_user_sets_wins_over_the_datasets_protocol():
    config = TrialConfig.from_flat({"method": "madry", "target_eps": 0.3, "train_eps": 0.2,
                                    "eps_grid": [0.0, 0.2]})
    protocol = resolve_protocol(config, "mnist-like")
    assert (protocol.target_eps, protocol.train_eps) == (0.3, 0.2)
    assert protocol.eps_grid == pytest.approx((0.2, 0.3))  # the target joins the grid


def test_a_digits_trial_reports_its_curve_on_the_digits_grid():
    result = run_trial(TrialConfig.from_flat({
        "method": "standard", "epochs": 1, "eval_examples": 32, "val_examples": 32, "eval_steps": 2,
        "val_steps": 2, "eval_sanity_examples": 16, "eval_sanity_queries": 20,
        "eval_profile": "quick"}))
    assert result.target_eps == 0.1
    assert sorted({p.eps for p in result.curve if p.attack == "pgd"}) == pytest.approx(DIGITS_GRID)


def test_the_papers_training_eps_is_scaled_to_the_digits_target():
    assert eps_scale("digits", "mnist-like") == pytest.approx(1 / 3)
    assert eps_scale("npz", "mnist-like") == 1.0 and eps_scale("cifar10", "cifar-like") == 1.0
    scale = eps_scale("digits", "mnist-like")
    [madry] = first_points("madry", "mnist-like", {}, scale)
    assert madry["train_eps"] == pytest.approx(0.1)  # Madry et al.'s 0.3 on MNIST
    [fixed] = first_points("madry", "mnist-like", {"train_eps": 0.05}, scale)
    assert "train_eps" not in fixed  # --set wins


@pytest.mark.parametrize("method", ["madry", "er-classifier"])
def test_searched_training_eps_stays_in_the_scaled_range(method):
    scale = eps_scale("digits", "mnist-like")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = search_space(method, "mnist-like", {}, scale)
    suggested = []
    for _ in range(20):
        trial = study.ask()
        space(trial)
        suggested.append(trial.params["train_eps"])
        study.tell(trial, 0.0)
    unscaled = (0.1, 0.4)  # search_spaces.eps_range("mnist-like")
    assert min(suggested) >= unscaled[0] * scale and max(suggested) <= unscaled[1] * scale
    assert max(suggested) > DATASET_PROTOCOL["digits"].target_eps  # the range is searched, not pinned


def test_the_recorded_search_space_is_the_scaled_one():
    [train_eps] = [d for d in space_dimensions("madry", "mnist-like", 1 / 3) if d["name"] == "train_eps"]
    assert (train_eps["low"], train_eps["high"]) == pytest.approx((0.1 / 3, 0.4 / 3))


def test_every_protocol_has_its_target_on_its_grid():
    for protocol in [*FAMILY_PROTOCOL.values(), *DATASET_PROTOCOL.values()]:
        assert any(math.isclose(e, protocol.target_eps) for e in protocol.eps_grid)
        assert list(protocol.eps_grid) == sorted(protocol.eps_grid) and protocol.eps_grid[0] == 0
