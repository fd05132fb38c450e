"""The final evaluation attacks the weights the user asked for (`final_checkpoint`: last or best
on validation), says which in the records, and flags a collapsed training."""
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from conftest import FAST
from orchestrator.cli import main
from trainables import TrialConfig, run_trial
from trainables.data import load_dataset
from trainables.evaluate import accuracy
from trainables.final_weights import collapsed, validation_rank
from trainables.trial import build_method

# Short attacks and few sanity points: these tests are about which weights get evaluated.
TINY = {"method": "standard", "lr": 3e-3, "eval_examples": 200, "val_examples": 64,
        "eval_steps": 2, "val_steps": 2, "eval_sanity_examples": 16, "eval_sanity_queries": 20,
        "eval_profile": "quick"}


@pytest.mark.parametrize("val_clean, expected", [
    ([0.35, 0.83, 0.04], True),  # ATLD on digits: epoch 23 -> epoch 30
    ([0.60, 0.90, 0.45], True),  # lost more than half of its gain over chance (0.8)
    ([0.60, 0.90, 0.55], False),  # lost less than half of it
    ([0.90, 0.93, 0.90], False),  # noise
    ([0.10, 0.12, 0.10], False),  # never learned: nothing to collapse from
    ([0.20, 0.50, 0.80], False),
])
def test_collapse_is_a_large_fall_of_validation_clean_accuracy(val_clean, expected):
    assert collapsed([{"val_clean_acc": a} for a in val_clean], num_classes=10) is expected


def _untrained_start(config: TrialConfig) -> tuple[dict, float]:
    """A resume state after a planted epoch 1 whose validation score no later epoch can beat,
    with untrained weights, and those weights' test accuracy on the evaluated points."""
    data = load_dataset(config.data)
    torch.manual_seed(config.train.seed)
    method = build_method(config, data, torch.device("cpu"))
    untrained_acc = accuracy(method, data.test.head(config.eval.eval_examples))
    planted = {"epoch": 1, "val_robust_acc": 2.0, "val_clean_acc": 2.0, "loss": 2.3}
    state = {"method": method.state(), "epoch": 1, "history": [planted],
             "torch_rng": torch.get_rng_state(),
             "best": {"epoch": 1, "rank": list(validation_rank(planted)),
                      "weights": {k: v.clone() for k, v in method.state_dict().items()}}}
    return state, untrained_acc


@pytest.mark.parametrize("final_checkpoint, evaluated_epoch", [("best", 1), ("last", 3)])
def test_the_final_evaluation_attacks_the_weights_asked_for(final_checkpoint, evaluated_epoch):
    config = TrialConfig.from_flat({**TINY, "epochs": 3, "final_checkpoint": final_checkpoint})
    state, untrained_acc = _untrained_start(config)
    result = run_trial(config, resume=state)
    assert (result.final_checkpoint, result.evaluated_epoch) == (final_checkpoint, evaluated_epoch)
    assert result.val_robust_acc == result.history[evaluated_epoch - 1]["val_robust_acc"]
    if final_checkpoint == "best":
        assert result.clean_acc == pytest.approx(untrained_acc)  # epoch 1's weights, not the trained ones
    else:
        assert result.clean_acc > untrained_acc + 0.3  # two epochs of training count


def test_best_is_the_epoch_with_the_best_validation_robust_accuracy():
    reports = []

    class Recorder:
        def report(self, metrics, state):
            reports.append((dict(metrics), state))

    config = TrialConfig.from_flat({**TINY, "epochs": 3, "final_checkpoint": "best"})
    result = run_trial(config, Recorder())
    ranks = [validation_rank(h) for h in result.history]
    assert result.evaluated_epoch == 1 + ranks.index(max(ranks))  # ties: the earlier epoch
    final_metrics, final_state = reports[-1]
    assert final_metrics["evaluated_epoch"] == result.evaluated_epoch
    assert final_metrics["final_checkpoint"] == "best" and final_metrics["collapsed"] is False
    # The trial's last checkpoint holds the evaluated weights.
    best_weights = final_state["best"]["weights"]
    assert all(torch.equal(final_state["method"]["modules"][k], v) for k, v in best_weights.items())


def test_an_unknown_final_checkpoint_is_refused_before_ray_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["sweep", "madry", "--final-checkpoint", "worst"])
    assert result.exit_code == 2 and "--final-checkpoint 'worst': choose one of last, best" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_the_records_say_which_weights_were_evaluated(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = CliRunner().invoke(main, [
        "sweep", "standard", "--trials", "1", "--epochs", "2", "--name", "best",
        "--final-checkpoint", "best", "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri, *FAST])
    assert result.exit_code == 0, result.output + str(result.exception)
    [row] = pq.read_table(tmp_path / "results" / "best" / "trials.parquet").to_pylist()
    assert row["final_checkpoint"] == "best" and row["evaluated_epoch"] in (1, 2)
    assert row["collapsed"] is False
    tags = MlflowClient(uri).get_run(row["mlflow_run_id"]).data.tags
    assert tags["orch.final_checkpoint"] == "best" and tags["orch.collapsed"] == "false"
    assert tags["orch.evaluated_epoch"] == str(row["evaluated_epoch"])
