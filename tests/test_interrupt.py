"""Stopping a sweep is a normal event: Ctrl+C (SIGINT to the process group, as a terminal sends
it) or SIGTERM (to the driver alone, as a job scheduler sends it) mid-trial keeps every MLflow run,
exits 130 / 143 with the command that continues the sweep, and `--resume` finishes the trial from
its checkpoint. Sweeps started together on a new SQLite store all run.

Each test runs `orch` as its own process, with a real local Ray, a real SQLite MLflow store and
real Parquet files.
"""
import os
import signal

import pyarrow.parquet as pq
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from cluster_helpers import Orch, RayCluster
from conftest import FAST

pytestmark = pytest.mark.integration

EPOCHS = 8


def _orch(tmp_path, *args, env=None):
    env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}  # progress lines arrive as they are printed
    return Orch(["sweep", *args, "--results-dir", "results", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
                env, tmp_path)


def _runs(tmp_path):
    """(parent run, child runs) of the one sweep, deleted ones included."""
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    experiment = client.get_experiment_by_name("orch-digits")
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _epochs_logged(tmp_path, run):
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_robust_acc"))


def _trial_rows(tmp_path):
    path = tmp_path / "results" / "stop" / "trials.parquet"
    return pq.read_table(path).to_pylist() if path.exists() else []


def _stopped_mid_trial(tmp_path, run, expected_code):
    """The sweep exited with `expected_code`, kept its one run KILLED/INTERRUPTED and said how
    to continue; returns the epochs that run has in MLflow."""
    assert run.finish() == expected_code, run.output
    assert "orch sweep madry --name stop --results-dir results --resume" in run.output
    parent, [child] = _runs(tmp_path)
    assert child.info.lifecycle_stage == "active" and child.info.status == "KILLED"
    assert child.data.tags["orch.status"] == "INTERRUPTED" and "orch.lost" not in child.data.tags
    assert parent.info.status == "KILLED" and parent.data.tags["orch.status"] == "INTERRUPTED"
    assert _trial_rows(tmp_path) == []  # the trial has not ended: no Parquet row yet
    return _epochs_logged(tmp_path, child)


@pytest.mark.timeout(1800)  # 82 s of CPU time; three sweep starts on a loaded 2-core machine take minutes
def test_ctrl_c_and_sigterm_mid_trial_then_resume_finish_the_trial_once(tmp_path):
    sweep = _orch(tmp_path, "madry", "--trials", "1", "--epochs", str(EPOCHS), "--scheduler", "fifo",
                  "--checkpoint-every", "0", "--name", "stop", *FAST)
    sweep.lines_until(lambda line: f" epoch 2/{EPOCHS}:" in line, timeout_s=600)
    os.killpg(sweep.process.pid, signal.SIGINT)  # Ctrl+C: the terminal signals the whole group
    logged = _stopped_mid_trial(tmp_path, sweep, 130)
    assert logged[:2] == [1, 2] and len(logged) < EPOCHS, logged

    resumed = _orch(tmp_path, "madry", "--name", "stop", "--resume")
    resumed.lines_until(lambda line: f"/{EPOCHS}:" in line, timeout_s=600)  # its first epoch after the checkpoint
    parent, [child] = _runs(tmp_path)  # running again: neither still reads as interrupted
    assert (child.info.status, child.data.tags["orch.status"]) == ("RUNNING", "RUNNING")
    assert (parent.info.status, parent.data.tags["orch.status"]) == ("RUNNING", "RUNNING")
    resumed.process.send_signal(signal.SIGTERM)  # the driver alone, as `kill` or a scheduler does
    _stopped_mid_trial(tmp_path, resumed, 143)

    final = _orch(tmp_path, "madry", "--name", "stop", "--resume")
    assert final.finish() == 0, final.output
    assert f" epoch 1/{EPOCHS}:" not in final.output + resumed.output  # continued, never restarted
    parent, [child] = _runs(tmp_path)
    print(f"\nSIGINT, SIGTERM, resume: 1 child run ({child.info.status}, {child.info.lifecycle_stage}), "
          f"epochs logged {_epochs_logged(tmp_path, child)}, parent {parent.info.status}; "
          f"Parquet rows {len(_trial_rows(tmp_path))}")
    assert child.info.status == "FINISHED" and child.info.lifecycle_stage == "active"
    assert child.data.tags["orch.status"] == "FINISHED"
    assert _epochs_logged(tmp_path, child) == list(range(1, EPOCHS + 1))  # each epoch once
    assert parent.info.status == "FINISHED" and parent.data.tags["orch.status"] == "FINISHED"
    [row] = _trial_rows(tmp_path)
    assert row["status"] == "FINISHED" and row["epochs_completed"] == EPOCHS
    assert row["mlflow_run_id"] == child.info.run_id


def test_three_sweeps_started_at_once_on_a_new_store_all_run(tmp_path):
    """MLflow migrates a new SQLite store when it first opens it; three sweeps doing that at once
    used to die in the migration. Their artifacts go beside the store, not into the cwd. (The
    three drivers share one running Ray: three local Rays starting at once on a small loaded
    machine can miss Ray's own 30 s startup limit, which is not what this tests.)"""
    cluster = RayCluster(tmp_path, gpus_per_node=0, worker=False)
    try:
        driver_env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}  # orch finds the token
        sweeps = [_orch(tmp_path, "standard", "--trials", "1", "--epochs", "1", "--name", f"together-{i}",
                        "--address", cluster.address, *FAST, env=driver_env) for i in range(3)]
        codes = [sweep.finish() for sweep in sweeps]
    finally:
        cluster.stop()
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    experiment = client.get_experiment_by_name("orch-digits")
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    print(f"\nthree sweeps at once on a new store: exit codes {codes}, {len(runs) - len(children)} parent "
          f"and {len(children)} child runs ({sorted({r.info.status for r in runs})})")
    assert codes == [0, 0, 0], "\n".join(sweep.output for sweep in sweeps)
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "orch-digits").as_uri()
    assert not (tmp_path / "mlruns").exists()
    for child in children:  # each checkpoint a logged model, stored beside the database too
        (output,) = child.outputs.model_outputs
        model = client.get_logged_model(output.model_id)
        assert model.artifact_location.startswith(experiment.artifact_location)
