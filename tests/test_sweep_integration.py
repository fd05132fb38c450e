"""Real local Ray, real SQLite MLflow store, real Parquet read back with pyarrow."""
import json
import math

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from conftest import FAST
from orchestrator.records import parquet
from orchestrator.cli import main
from trainables.data import DATASET_PROTOCOL

pytestmark = pytest.mark.integration

CURVE_COLUMNS = ["sweep", "method", "trial_id", "mlflow_run_id", "dataset", "model", "seed",
                 "attack", "norm", "eps", "steps", "restarts", "n_examples", "accuracy"]
TRIAL_COLUMNS = ["status", "clean_acc", "robust_acc", "val_robust_acc", "duration_s",
                 "checkpoint_uri", "error"]
ER_HPARAMS = {"hp_lambda", "hp_embed_dim", "hp_prior", "hp_train_eps", "hp_lr"}


def _sweep(tmp_path, *args, exit_code=0):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = CliRunner().invoke(main, ["sweep", *args, "--results-dir", str(tmp_path / "results"),
                                       "--tracking-uri", uri, *FAST])
    assert result.exit_code == exit_code, result.output + str(result.exception)
    return result, MlflowClient(uri)


@pytest.fixture(scope="module")
def er_sweep(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("er")
    # --compile is a no-op on CPU but must reach every trial's config.
    result, client = _sweep(tmp_path, "er-classifier", "--trials", "2", "--epochs", "2", "--name", "er2",
                            "--compile")
    return tmp_path / "results" / "er2", result, client


def test_mlflow_has_a_parent_and_one_child_per_trial_with_metrics(er_sweep):
    sweep_dir, _, client = er_sweep
    experiment = client.get_experiment_by_name("orch-digits")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "er2"
    assert len(children) == 2
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        assert {"loss", "val_robust_acc", "test_clean_acc", "test_robust_acc"} <= set(child.data.metrics)
        curve = client.get_metric_history(child.info.run_id, "curve/pgd")
        steps = sorted(m.step for m in curve)  # step = ε x 1000 over digits' own ε grid
        assert steps == [round(eps * 1000) for eps in DATASET_PROTOCOL["digits"].eps_grid]
        history = client.get_metric_history(child.info.run_id, "val_robust_acc")
        assert sorted(m.step for m in history) == [1, 2]  # one value per epoch
        assert {"lambda", "prior", "embed_dim", "dataset", "target_eps"} <= set(child.data.params)
        config = json.loads(open(client.download_artifacts(child.info.run_id, "config.json")).read())
        assert config["compile"] is True  # the full config is an artifact, the params what is compared
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"curve.json", "curve.csv"} <= artifacts
        (model,) = client.search_logged_models([experiment.experiment_id],
                                               filter_string=f"source_run_id = '{child.info.run_id}'")
        assert model.status == "READY" and {a.path for a in client.list_logged_model_artifacts(model.model_id)}
        (data,) = child.inputs.dataset_inputs
        assert data.dataset.name == "digits" and json.loads(data.dataset.profile)["splits"]["test"] > 0
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} >= {"curves.parquet", "trials.parquet"}


def test_curves_parquet_has_the_documented_schema(er_sweep):
    sweep_dir, _, client = er_sweep
    table = pq.read_table(sweep_dir / "curves.parquet")
    assert table.schema.metadata[b"orch.schema_version"] == parquet.SCHEMA_VERSION.encode()
    assert set(CURVE_COLUMNS) <= set(table.column_names)
    assert ER_HPARAMS <= set(table.column_names)
    assert str(table.schema.field("eps").type) == "double"
    assert str(table.schema.field("hp_embed_dim").type) == "int64"
    rows = table.to_pylist()
    assert {r["trial_id"] for r in rows} == {r["trial_id"] for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert {r["attack"] for r in rows} >= {"clean", "fgsm", "pgd", "worst"}
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["eps"] <= 1.0
        assert row["mlflow_run_id"] and client.get_run(row["mlflow_run_id"]).info.run_id == row["mlflow_run_id"]
    # Robust accuracy at the largest ε can't exceed clean accuracy, trial by trial.
    for trial_id in {r["trial_id"] for r in rows}:
        mine = [r for r in rows if r["trial_id"] == trial_id]
        clean = next(r["accuracy"] for r in mine if r["attack"] == "clean")
        assert all(r["accuracy"] <= clean + 1e-9 for r in mine if r["attack"] == "worst")


def test_trials_parquet_has_one_finished_row_per_trial(er_sweep):
    sweep_dir, result, _ = er_sweep
    rows = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    assert len(rows) == 2 and len({r["trial_id"] for r in rows}) == 2
    for row in rows:
        assert set(TRIAL_COLUMNS) <= set(row)
        assert row["status"] == "FINISHED" and row["error"] is None
        assert 0 <= row["robust_acc"] <= row["clean_acc"] + 1e-9 <= 1 + 1e-9
        assert row["duration_s"] > 0 and row["epochs_completed"] == 2
    # The first trial is the paper's MNIST defaults.
    assert any(r["hp_embed_dim"] == 4 and math.isclose(r["hp_lambda"], 0.015) for r in rows)
    assert "best trials" in result.output and "mlflow ui --backend-store-uri" in result.output


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    """...and a sweep whose every trial failed exits 1 with one line saying why."""
    # lr=1e9 makes the loss NaN: a real failure, not a simulated one. One trial at a time
    # (--cpus-per-trial 2 on 2 cores) shows the second still runs after the first failed.
    result, client = _sweep(tmp_path, "madry", "--trials", "2", "--epochs", "1", "--name", "bad",
                            "--set", "lr=1e9", "--cpus-per-trial", "2", exit_code=1)
    rows = pq.read_table(tmp_path / "results" / "bad" / "trials.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
    assert all("NonFiniteLoss" in r["error"] and "nan" in r["error"] for r in rows)
    experiment = client.get_experiment_by_name("orch-digits")
    children = [r for r in client.search_runs([experiment.experiment_id])
                if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.info.status for r in children) == ["FAILED", "FAILED"]
    assert all("NonFiniteLoss" in r.data.tags["error"] for r in children)
    assert result.stderr.splitlines()[-1] == (  # MLflow and Ray log to stderr before it
        "orch: error: every trial of sweep bad failed (2); the first: " + rows[0]["error"])


def test_collate_merges_sweeps(er_sweep, tmp_path):
    sweep_dir, _, _ = er_sweep
    out = tmp_path / "all.parquet"
    result = CliRunner().invoke(main, ["collate", str(sweep_dir), str(sweep_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    merged = pq.read_table(out)
    assert merged.num_rows == 2 * pq.read_table(sweep_dir / "curves.parquet").num_rows
    missing = CliRunner().invoke(main, ["collate", str(tmp_path / "nope"), "-o", str(out)])
    assert missing.exit_code == 2
