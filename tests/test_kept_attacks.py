"""A final evaluation killed part-way continues from the attacks it finished, inside AutoAttack's
cascade too, and computes exactly what the uninterrupted evaluation computes
(trainables.kept_attacks)."""
from __future__ import annotations

import shutil
import time
from dataclasses import replace

import pytest

from trainables.config import EvalConfig
from trainables.evaluate import evaluate_trial
from trainables.protocol import Protocol_

from conftest import train_method

pytestmark = pytest.mark.usefixtures("one_thread")

PROTOCOL = Protocol_(target_eps=0.1, train_eps=0.2, eps_grid=(0.05, 0.1, 0.2))
CONFIG = EvalConfig(eval_profile="standard", eval_examples=30, eval_sanity_examples=30, eval_steps=5,
                    eval_strong_restarts=1, eval_sanity_queries=50)
CONTINUED = "finished by the interrupted run"


class Killed(Exception):
    """Stands for the kill: raised from a progress line, after what it reports was kept."""


@pytest.fixture(scope="module")
def madry(digits):
    return train_method(digits, "madry", epochs=2, train_steps=3, train_eps=0.2)


@pytest.fixture(scope="module")
def whole(digits, madry):
    """The evaluation that nothing interrupted, keeping nothing."""
    return evaluate(madry, digits, "")[0]


def evaluate(model, digits, folder, kill_at: str | None = None, **changes) -> tuple[object, list[str]]:
    said = []

    def say(line: str) -> None:
        said.append(line)
        if kill_at is not None and kill_at in line:
            raise Killed(line)

    evaluation = evaluate_trial(model, digits.test, PROTOCOL, replace(CONFIG, eval_progress_dir=str(folder), **changes),
                                "mnist-like", say=say)
    return evaluation, said


@pytest.mark.parametrize("kill_at, continued", [
    ("attack 5/", ["attack 1/", "attack 2/", "attack 3/", "attack 4/", "attack 5/"]),
    # Inside AutoAttack (at the target ε, after the gradient attacks there): two stages kept.
    ("apgd-t: broke", ["attack 1/", "attack 6/", "autoattack at ε 0.1: apgd-ce, apgd-t " + CONTINUED]),
])
def test_an_evaluation_killed_part_way_continues_to_the_same_result(digits, madry, whole, tmp_path, kill_at,
                                                                   continued):
    started = time.process_time()
    with pytest.raises(Killed):
        evaluate(madry, digits, tmp_path / "cut", kill_at)
    killed_run_cpu = time.process_time() - started
    resumed, said = evaluate(madry, digits, tmp_path / "cut")
    for start in continued:  # what the killed run finished was read back, not attacked again
        assert any(line.startswith(start) and CONTINUED in line for line in said), (start, said)
    assert resumed.examples == whole.examples  # every point, every attack and stage
    assert (resumed.curve, resumed.robust_acc, resumed.autoattack_broken, resumed.sanity) == (
        whole.curve, whole.robust_acc, whole.autoattack_broken, whole.sanity)
    assert resumed.measurements == whole.measurements
    # Its cost counts what the killed run spent on the attacks it kept (nothing kept: nothing carried).
    assert 0 < resumed.earlier_cpu_s <= killed_run_cpu and whole.earlier_cpu_s == 0.0


def test_another_model_or_evaluation_never_reads_them(digits, madry, tmp_path):
    quick = {"eval_profile": "quick"}  # the same folder names as the standard profile's, sooner
    evaluate(madry, digits, tmp_path, **quick)
    other = train_method(digits, "madry", epochs=2, seed=1, train_steps=3, train_eps=0.2)
    for model, changes in ((other, {}), (madry, {"eval_examples": 20}), (madry, {"eval_steps": 6})):
        _, said = evaluate(model, digits, tmp_path, **quick, **changes)
        assert not any(CONTINUED in line for line in said)
    _, said = evaluate(madry, digits, tmp_path, **quick)
    assert all(CONTINUED in line for line in said if line.startswith("attack "))
    assert len(list(tmp_path.iterdir())) == 4  # one folder per (weights, points, plan)



def test_a_copy_continues_a_model_re_trained_to_the_same_weights(digits, madry, whole, tmp_path):
    """What `orch benchmark --continue-from` relies on: the folder kept on one machine, copied to
    another, where the seed is trained again from scratch (the same recipe, the same threads)."""
    with pytest.raises(Killed):
        evaluate(madry, digits, tmp_path / "there", "attack 3/")
    shutil.copytree(tmp_path / "there", tmp_path / "here")
    again = train_method(digits, "madry", epochs=2, train_steps=3, train_eps=0.2)
    resumed, said = evaluate(again, digits, tmp_path / "here")
    for start in ("attack 1/", "attack 2/", "attack 3/"):
        assert any(line.startswith(start) and CONTINUED in line for line in said), (start, said)
    assert not any(line.startswith("attack 4/") and CONTINUED in line for line in said)
    assert resumed.examples == whole.examples


def test_autoattack_stages_keep_only_the_examples_a_stage_broke(tmp_path):
    """The rows no stage broke are the inputs themselves: kept without them, read back whole; a
    state kept whole by an earlier orch is read as it is."""
    import torch

    from trainables.kept_attacks import KeptAttacks

    x = torch.rand(6, 1, 8, 8)
    x_adv = x.clone()
    x_adv[[1, 4]] += 0.05
    broken = {"apgd-ce": torch.tensor([0, 1, 0, 0, 0, 0], dtype=torch.bool),
              "apgd-t": torch.tensor([0, 0, 0, 0, 1, 0], dtype=torch.bool)}
    state = {"x_adv": x_adv, "robust": ~(broken["apgd-ce"] | broken["apgd-t"]), "broken_by": broken, "messages": []}
    kept = KeptAttacks(tmp_path)
    kept.save_stages("025-autoattack-stages", state)
    on_disk = torch.load(tmp_path / "025-autoattack-stages.pt", weights_only=True)
    assert "x_adv" not in on_disk and on_disk["adv_rows"].tolist() == [1, 4]
    back = kept.load_stages("025-autoattack-stages", x)
    assert torch.equal(back["x_adv"], x_adv) and back["broken_by"].keys() == broken.keys()
    kept.save("whole", state)
    assert torch.equal(kept.load_stages("whole", x)["x_adv"], x_adv)
