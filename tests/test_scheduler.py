"""ASHA on a real local Ray: weak trials stop early and are recorded as STOPPED, not as finished
or failed, in trials.parquet and in MLflow (a normal end: FINISHED, tagged orch.stopped_early),
and as PRUNED in the Optuna study. What MLflow's runs table shows of them tells the truth."""
import json
import math

import optuna
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from conftest import FAST
from orchestrator.cli import main
from orchestrator.tracking.logger import AT_TARGET_PREFIX, CURVE_PREFIX, EPS_STEP_SCALE

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
    curves = pq.read_table(tmp_path / "results" / "asha" / "curves.parquet").to_pandas()
    for row in rows:
        run = client.get_run(row["mlflow_run_id"])
        assert run.data.tags["orch.status"] == row["status"]
        assert run.info.status == "FINISHED"  # stopped by the scheduler is a normal end, not KILLED
        assert run.info.run_name.startswith(row["trial_id"] + " ")  # the table shows the id first
        assert run.data.tags["orch.stopped_early"] == str(row["status"] == "STOPPED").lower()
        _metrics_are_where_their_names_say(client, run, row, curves)
        models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
        if row["status"] == "STOPPED":  # never tested: no model to load
            assert run.data.tags["orch.stopped_at_epoch"] == "1" and models == []
        else:
            assert [m.name for m in models] == [f"{row['trial_id']}-standard"]
    assert f"{len(finished)} finished, 0 failed, {len(stopped)} stopped early" in result.output

    # Optuna is told a stopped trial was PRUNED (its last value came from the cheap per-epoch
    # PGD), and a finished one's strong validation value (PGD-CE and APGD-DLR).
    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{tmp_path}/results/asha/optuna.db")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped)
    completed = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(completed) == pytest.approx(sorted(r["val_strong_robust_acc"] for r in finished))


def _metrics_are_where_their_names_say(client, run, row, curves) -> None:
    """The latest value of each metric (what MLflow's table shows) is at the ε its name gives:
    test_* and test_acc_at_target/* at the target, curve/* (a curve by name) at the grid's
    largest ε, the rest per epoch; no diagnostics among the metrics."""
    metrics = run.data.metrics
    assert not [k for k in metrics if k.startswith(("robust_acc/", "blackbox_gap/")) or k == "target_eps"]
    target = float(run.data.tags["target_eps"])
    assert math.isclose(target, 0.02)
    if row["status"] == "STOPPED":
        assert not [k for k in metrics if k.startswith(("test_", CURVE_PREFIX))]
        assert set(metrics) >= {"val_robust_acc", "val_clean_acc", "loss"}
        return
    assert metrics["test_robust_acc"] == row["robust_acc"] and metrics["test_clean_acc"] == row["clean_acc"]
    mine = curves[curves["mlflow_run_id"] == run.info.run_id]
    at_target = mine[(mine["eps"] - target).abs() < 1e-9]
    worst = at_target[at_target["attack"] == "worst"]["accuracy"].item()
    assert metrics["test_robust_acc"] == worst
    shown_at_target = {k.removeprefix(AT_TARGET_PREFIX): v for k, v in metrics.items() if k.startswith(AT_TARGET_PREFIX)}
    attacks = at_target[~at_target["attack"].isin(["clean", "worst"])]
    assert shown_at_target == {r.attack if r.path == "predict" else f"{r.attack}-{r.path}": r.accuracy
                               for r in attacks.itertuples()} and shown_at_target
    assert [k for k in metrics if k.startswith(CURVE_PREFIX)]
    for name in (k for k in metrics if k.startswith(CURVE_PREFIX)):
        history = client.get_metric_history(run.info.run_id, name)
        last = max(history, key=lambda m: m.step)
        assert metrics[name] == last.value and last.step == round(mine["eps"].max() * EPS_STEP_SCALE)
    for name in ("val_robust_acc", "loss"):  # per epoch: the last epoch's value
        assert max(m.step for m in client.get_metric_history(run.info.run_id, name)) == row["epochs_completed"]
    diagnostics = json.loads(open(client.download_artifacts(run.info.run_id, "diagnostics.json")).read())
    assert diagnostics["target_eps"] == target
    assert 0 <= diagnostics["sanity_measured/zero_grad_fraction"] <= 1
