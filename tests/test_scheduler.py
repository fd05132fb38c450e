"""ASHA on a real local Ray: weak trials stop early and are recorded as STOPPED, not as finished
or failed, in trials.parquet and in MLflow, and as PRUNED in the Optuna study."""
import optuna
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from conftest import FAST
from orchestrator.cli import main

pytestmark = pytest.mark.integration


def test_asha_stops_weak_trials_and_records_them_as_stopped(tmp_path):
    # target_eps 0.02 keeps validation robust accuracy far from zero, so trials differ at the
    # first rung (epoch 1). The fourth configuration (seed 0) trails the first three there;
    # whatever the order two concurrent trials finish in, ASHA stops it.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = CliRunner().invoke(main, [
        "sweep", "standard", "--trials", "4", "--epochs", "2", "--scheduler", "asha", "--name", "asha",
        "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri, "--set", "target_eps=0.02", *FAST])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "scheduler asha" in result.output

    rows = pq.read_table(tmp_path / "results" / "asha" / "trials.parquet").to_pylist()
    stopped = [r for r in rows if r["status"] == "STOPPED"]
    finished = [r for r in rows if r["status"] == "FINISHED"]
    assert len(rows) == 4 and stopped and finished and len(stopped) + len(finished) == 4
    assert all(r["epochs_completed"] == 1 and r["clean_acc"] is None and r["error"] is None for r in stopped)
    assert all(r["epochs_completed"] == 2 for r in finished)
    curve_trials = {r["trial_id"] for r in pq.read_table(tmp_path / "results" / "asha" / "curves.parquet").to_pylist()}
    assert curve_trials == {r["trial_id"] for r in finished}  # a stopped trial has no test curve

    client = MlflowClient(uri)
    for row in rows:
        run = client.get_run(row["mlflow_run_id"])
        assert run.data.tags["orch.status"] == row["status"]
        assert run.info.status == ("KILLED" if row["status"] == "STOPPED" else "FINISHED")
    assert f"{len(finished)} finished, 0 failed, {len(stopped)} stopped early" in result.output

    # Optuna is told a stopped trial was PRUNED (its last value came from the cheap per-epoch
    # PGD), and a finished one's strong validation value (PGD-CE and APGD-DLR).
    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{tmp_path}/results/asha/optuna.db")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped)
    completed = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(completed) == pytest.approx(sorted(r["val_strong_robust_acc"] for r in finished))
