"""The evaluation's second pass (issue #20): the worst case counts every attack that ran, sanity
attacks included, at every ε' <= ε; AutoAttack is AutoAttack alone; checks that can fail. The
planted cases use a Trapdoor model: a point only a planted attack can break."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import trainables.attacker as attacker_module
from trainables.attacks import ATTACKS, grid_attacks, label
from trainables.attacks.autoattack import AutoAttackRun
from trainables.config import ConfigError, EvalConfig, TrialConfig, check_profile
from trainables.evaluate import Job, evaluate_trial, worst_case
from trainables.sanity import BLACKBOX_SHARE_MAX
from trainables.protocol import Protocol_
from trainables import trial
from trainables.trial import surrogate_config, trained_surrogate

from conftest import train_method
from planted import Quantized, Trapdoor, doors, open_doors

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = 0.1
PROTOCOL = Protocol_(target_eps=TARGET, train_eps=0.2, eps_grid=(0.05, TARGET, 0.2))
STANDARD = EvalConfig(eval_profile="standard", eval_examples=100, eval_sanity_examples=50,
                      eval_steps=10, eval_strong_restarts=2)
QUICK = replace(STANDARD, eval_profile="quick", eval_sanity_queries=50)
STAGES = ("apgd-ce", "apgd-t", "fab-t", "square")


@pytest.fixture(scope="module")
def trapdoor(digits) -> Trapdoor:
    """A PGD-trained model with a door at the target ε beside each of the first 100 test points."""
    madry = train_method(digits, "madry", epochs=3, train_steps=7, train_eps=0.2)
    test = digits.test.head(100)
    return Trapdoor(madry.model, doors(test.x, TARGET), test.y).eval()


def planted_autoattack(stage: str | None):
    """An AutoAttack whose `stage` opens every door (None: finds nothing)."""

    def run(net, x, y, eps, version, seed, batch_size, **progress):
        x_adv = open_doors(net, x, eps) if stage else x.clone()
        broken = ~(net(x_adv).argmax(1) == y)
        return AutoAttackRun(x_adv, {s: broken if s == stage else torch.zeros_like(broken)
                                     for s in STAGES}, frozenset())

    return run


def rows(evaluation, attack: str) -> dict[float, float]:
    return {p.eps: p.accuracy for p in evaluation.curve if p.attack == attack}


def test_a_point_broken_only_by_autoattack_stays_broken_at_larger_eps(digits, trapdoor, monkeypatch):
    """AutoAttack runs at the target ε only; what it breaks there is broken in every larger ball,
    so the worst case at 0.2 counts it although no attack run at 0.2 found it. Below the target
    nothing changes, and each attack's own row stays as measured."""
    monkeypatch.setattr(attacker_module, "autoattack_cascade", planted_autoattack(None))
    before = evaluate_trial(trapdoor, digits.test, PROTOCOL, STANDARD, "mnist-like")
    monkeypatch.setattr(attacker_module, "autoattack_cascade", planted_autoattack("apgd-ce"))
    after = evaluate_trial(trapdoor, digits.test, PROTOCOL, STANDARD, "mnist-like")
    assert rows(after, "autoattack")[TARGET] == 0.0 and rows(before, "pgd")[0.2] > 0.2
    assert rows(after, "worst") == {0.05: rows(before, "worst")[0.05], TARGET: 0.0, 0.2: 0.0}
    for attack in ("fgsm", "pgd", "cw"):
        assert rows(after, attack) == rows(before, attack)
    assert after.robust_acc == 0.0
    assert after.autoattack_broken == {"apgd-ce": round(after.clean_acc * 100), "apgd-t": 0,
                                       "fab-t": 0, "square": 0}


def test_autoattack_acc_is_autoattack_alone_and_the_worst_case_counts_the_rest(
        digits, trapdoor, monkeypatch):
    """An AutoAttack that misses what PGD breaks: its own accuracy is the clean accuracy, and
    the headline is lower (before issue #20 it could only equal the worst case)."""
    monkeypatch.setattr(attacker_module, "autoattack_cascade", planted_autoattack(None))
    evaluation = evaluate_trial(trapdoor, digits.test, PROTOCOL, STANDARD, "mnist-like")
    assert evaluation.autoattack_acc == evaluation.clean_acc
    assert evaluation.robust_acc < rows(evaluation, "pgd")[TARGET] < evaluation.autoattack_acc


def test_a_point_broken_only_by_autoattacks_square_lowers_the_headline_and_is_flagged(
        digits, trapdoor, monkeypatch):
    """Square inside AutoAttack breaks what every white-box attack left robust: the headline
    counts it, the breakdown names Square, and the black-box share flags the gradient."""
    monkeypatch.setattr(attacker_module, "autoattack_cascade", planted_autoattack("square"))
    evaluation = evaluate_trial(trapdoor, digits.test, PROTOCOL, STANDARD, "mnist-like")
    assert evaluation.robust_acc == 0.0 < rows(evaluation, "pgd")[TARGET]
    assert evaluation.autoattack_broken["square"] > 0
    gaps = {gap.attack: gap for gap in evaluation.measurements.blackbox_gaps if gap.eps == TARGET}
    assert gaps["square"].share == 1.0 and gaps["square"].above(BLACKBOX_SHARE_MAX)
    assert evaluation.sanity["whitebox_le_blackbox"] is False


def test_the_sanity_square_counts_in_the_headline(digits, trapdoor, monkeypatch):
    """In quick (no AutoAttack), the sanity check's Square run at the target ε: what it breaks
    lowers the worst case there and beyond, not only the check."""
    real = ATTACKS.get("square")
    honest = evaluate_trial(trapdoor, digits.test, PROTOCOL, QUICK, "mnist-like")
    monkeypatch.setitem(ATTACKS._entries, "square",
                        replace(real, craft=lambda net, x, y, eps, s: open_doors(net, x, eps)))
    planted = evaluate_trial(trapdoor, digits.test, PROTOCOL, QUICK, "mnist-like")
    assert honest.robust_acc > 0.2 and honest.sanity["whitebox_le_blackbox"] is True
    assert rows(planted, "worst") == {0.05: rows(honest, "worst")[0.05], TARGET: 0.0, 0.2: 0.0}
    assert planted.sanity["whitebox_le_blackbox"] is False


def test_an_adversarial_example_outside_the_ball_fails_adv_in_ball(digits, trapdoor, monkeypatch):
    """The package's x_adv are measured (here a Square that steps 2ε); the project's own attacks
    project, so one that did not is a bug that stops the evaluation."""
    real_square, real_pgd = ATTACKS.get("square"), ATTACKS.get("pgd")
    monkeypatch.setitem(ATTACKS._entries, "square", replace(
        real_square, craft=lambda net, x, y, eps, s: (x + 2 * eps).clamp(0, 1)))
    assert evaluate_trial(trapdoor, digits.test, PROTOCOL, QUICK, "mnist-like").sanity["adv_in_ball"] is False
    monkeypatch.setitem(ATTACKS._entries, "pgd", replace(
        real_pgd, craft=lambda net, x, y, eps, s: (x + 2 * eps).clamp(0, 1)))
    with pytest.raises(AssertionError, match="outside its ε-ball"):
        evaluate_trial(trapdoor, digits.test, PROTOCOL, QUICK, "mnist-like")


def test_autoattacks_own_checks_are_flags(digits):
    """pyautoattack's checks, which it only logs, become flags: on a model with zero gradients
    everywhere its zero-gradient check fires, and its Square stage beats its gradient attacks by
    more than the package's threshold even on 30 points (judged by trainables.sanity)."""
    standard = train_method(digits, "standard", epochs=3)
    config = replace(STANDARD, eval_examples=30, eval_sanity_examples=30)
    evaluation = evaluate_trial(Quantized(standard.model, straight_through=False), digits.test,
                                Protocol_(0.2, 0.2, (0.2,)), config, "mnist-like")
    flags = evaluation.sanity
    assert flags["autoattack_no_zero_gradient"] is False and flags["autoattack_square_gain_small"] is False
    assert flags["autoattack_deterministic"] is True and flags["autoattack_outputs_logits"] is True
    assert evaluation.autoattack_broken["square"] > 0 and flags["trusted"] is False


def test_worst_case_is_cumulative_over_eps_and_roles():
    """Per example, broken at ε by any attack of any role at any ε' <= ε."""
    clean = torch.tensor([True, True, True, False])
    results = {Job("pgd", 0.1): torch.tensor([True, True, True, False]),
               Job("autoattack", 0.2): torch.tensor([False, True, True, False]),
               Job("pgd", 0.3): torch.tensor([True, True, False, False]),
               Job("pgd", 0.2, role="doubled"): torch.tensor([True, False, True, True])}
    worst = worst_case(results, clean)
    assert worst[0.1].tolist() == [True, True, True, False]
    assert worst[0.2].tolist() == [False, False, True, False]
    assert worst[0.3].tolist() == [False, False, False, False]
    assert worst_case(results, clean, kinds={"gradient"})[0.3].tolist() == [True, False, False, False]


def test_the_registry_carries_labels_and_grid_profiles():
    assert label("pgd") == "PGD-L∞" and label("autoattack") == "AutoAttack"
    assert label("worst") == "worst case" and label("apgd-t") == "APGD-T"
    assert grid_attacks("quick") == ("fgsm", "pgd", "transfer")
    assert grid_attacks("standard") == ("fgsm", "pgd", "cw", "transfer")
    assert "autoattack" not in grid_attacks("full") and "square" in grid_attacks("full")


def test_standard_is_the_one_default_and_profiles_are_checked_once():
    assert EvalConfig().eval_profile == "standard"
    assert check_profile("full") == "full"
    with pytest.raises(ConfigError, match="choose one of quick, standard, full"):
        check_profile("fast")
    with pytest.raises(ConfigError, match="'fast'"):
        EvalConfig(eval_profile="fast")


def test_the_default_surrogate_is_pgd_trained_and_seeded_apart():
    config = TrialConfig(method="trades").replace(seed=3, epochs=2, target_eps=0.2, train_steps=5)
    surrogate = surrogate_config(config)
    assert surrogate.method == "madry" and surrogate.train.seed != config.train.seed
    assert surrogate.attack.train_steps == 5 and surrogate.eval.target_eps == 0.2
    assert surrogate_config(config.replace(seed=surrogate.train.seed)).train.seed != surrogate.train.seed


def test_a_kept_surrogate_is_trained_once_per_folder_and_loaded_the_same(tmp_path, monkeypatch):
    """The first trial trains the surrogate and keeps its weights; the next (another process:
    the in-process cache cleared) loads them and trains nothing; another config is not read."""
    config = surrogate_config(TrialConfig(method="trades").replace(epochs=1, train_steps=2, threads=1))
    trained_surrogate.cache_clear()
    first = {k: v.clone() for k, v in trained_surrogate(config, str(tmp_path)).state_dict().items()}
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".lock", ".pt"]  # no torn .partial left

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(trial, "train_one_epoch", no_training)
    trained_surrogate.cache_clear()
    loaded = trained_surrogate(config, str(tmp_path)).state_dict()
    assert all(torch.equal(first[k], loaded[k]) for k in first)
    trained_surrogate.cache_clear()
    with pytest.raises(AssertionError, match="trained again"):
        trained_surrogate(config.replace(epochs=2), str(tmp_path))
    trained_surrogate.cache_clear()


def test_a_kept_surrogate_is_named_by_the_data_it_read_not_their_path(tmp_path):
    """Kept weights (e.g. committed with a benchmark's records) serve the same data in another
    folder or on another machine, and never data that differ."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
              "y_train": np.arange(40) % 4, "x_test": rng.integers(0, 256, (8, 8, 8), dtype=np.uint8),
              "y_test": np.arange(8) % 4}
    paths = [tmp_path / name / "data.npz" for name in ("here", "there", "other")]
    for path, labels in zip(paths, (arrays["y_test"], arrays["y_test"], arrays["y_test"][::-1])):
        path.parent.mkdir()
        np.savez(path, **{**arrays, "y_test": labels})
    configs = [TrialConfig(method="madry").replace(dataset="npz", data_dir=str(path)) for path in paths]
    names = [trial._surrogate_file(surrogate_config(config), "kept").name for config in configs]
    assert names[0] == names[1] != names[2]


def test_trials_that_need_the_surrogate_at_once_train_it_once(tmp_path):
    """Two processes (a benchmark's fresh seeds end their training together): one trains and
    keeps the surrogate, the other waits for it and loads it."""
    code = ("import sys; from trainables.config import TrialConfig; "
            "from trainables.trial import surrogate_config, trained_surrogate; "
            "c = surrogate_config(TrialConfig(method='trades').replace(epochs=2, train_steps=2, threads=1)); "
            "trained_surrogate(c, sys.argv[1])")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    said = sorted(run.communicate(timeout=300)[0].strip().split(": ")[-1].split(" ")[0] for run in runs)
    assert said == ["loaded", "training"] and all(run.returncode == 0 for run in runs)
