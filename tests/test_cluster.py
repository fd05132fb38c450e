"""A real two-node Ray cluster on this machine (head and worker started by `ray start`, token
authentication on, 2 logical GPUs each), a real `mlflow server` on 127.0.0.1, and `orch` run as
its own process: trials spread over both nodes, a killed trial continues from its checkpoint, a
killed driver is resumed, an MLflow outage loses nothing, a local --storage is refused.

The worker node runs in its own mount namespace where the driver's folder (`head-local`) is an
empty tmpfs, as another machine's disk would be; `shared` is seen by both, as NFS would be.
"""
import json
import os
import signal
import time

import optuna
import pyarrow.parquet as pq
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from cluster_helpers import CAN_UNSHARE, MlflowServer, Orch, RayCluster, TcpProxy, wait_for
from conftest import FAST

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    (base / "head-local").mkdir()
    (base / "shared").mkdir()
    server = MlflowServer(base)  # starts while the cluster does
    cluster = RayCluster(base, private_dir=base / "head-local" if CAN_UNSHARE else None)
    try:
        server.wait()
        yield Env(base, cluster, server)
    finally:
        cluster.stop()
        server.stop()


class Env:
    def __init__(self, base, cluster, server):
        self.base, self.cluster, self.server = base, cluster, server
        self.cwd = base / "head-local"
        # Only the token file: orch itself turns token mode on for an explicit --address.
        self.driver_env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
        self.client = MlflowClient(server.uri)

    def orch(self, *args, tracking_uri=None, env=None):
        return Orch(["sweep", *args, "--address", self.cluster.address, "--results-dir", "results",
                     "--tracking-uri", tracking_uri or self.server.uri, *FAST],
                    env or self.driver_env, self.cwd)

    def children(self, sweep, view=ViewType.ACTIVE_ONLY):
        experiment = self.client.get_experiment_by_name("orch-digits")
        return [r for r in self.client.search_runs([experiment.experiment_id], f"tags.sweep = '{sweep}'",
                                                   run_view_type=view)
                if "mlflow.parentRunId" in r.data.tags]

    def rows(self, sweep):
        path = self.cwd / "results" / sweep / "trials.parquet"
        return pq.read_table(path).to_pylist() if path.exists() else []


def _epochs_logged(client, run):
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_robust_acc"))


def _max_overlap(intervals):
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("case", ["local storage", "too many gpus", "wrong token"])
def test_what_the_cluster_cannot_do_is_refused_before_anything_runs(env, case):
    args, expected = {
        "local storage": ([], ["is a local path that 1 of 2 nodes cannot see", "s3://", "gs://", "shared filesystem"]),
        "too many gpus": (["--gpus", "8"], ["--gpus 8 exceeds the 4 GPUs of the Ray cluster at"]),
        "wrong token": ([], ["did not accept this driver's authentication token", "RAY_AUTH_TOKEN_PATH"]),
    }[case]
    if case == "local storage" and not CAN_UNSHARE:
        pytest.skip("needs a private mount namespace (unshare) to give the worker node its own disk")
    driver_env = dict(env.driver_env)
    if case == "wrong token":
        (env.base / "wrong-token").write_text("0" * 64)
        driver_env["RAY_AUTH_TOKEN_PATH"] = str(env.base / "wrong-token")
        driver_env["RAY_gcs_server_port_wait_time_s"] = "3"  # Ray's connect retries: ~20 s by default
    before = sorted(p.name for p in env.cwd.iterdir())
    run = env.orch("madry", "--trials", "1", "--epochs", "1", "--name", f"bad-{case.replace(' ', '-')}",
                   *args, tracking_uri=f"sqlite:///{env.cwd}/bad.db", env=driver_env)
    assert run.finish() == 2, run.output
    errors = [line for line in run.output.splitlines() if line.startswith("orch: error: ")]
    assert len(errors) == 1 and all(text in errors[0] for text in expected), run.output
    assert sorted(p.name for p in env.cwd.iterdir()) == before  # no results/, no bad.db, no marker


def test_a_sweep_spreads_over_both_nodes_and_survives_an_mlflow_outage(env):
    """4 trials, --gpus 3 of the cluster's 4: at most 3 at once, on both nodes, each trial with
    its own logical GPU. MLflow goes away after the first epoch and comes back later: nothing
    that was logged in between is lost."""
    proxy = TcpProxy(env.server.port)
    proxy.up()
    storage = env.base / "shared"
    run = env.orch("er-classifier", "--gpus", "3", "--gpus-per-trial", "1", "--trials", "4", "--epochs", "2",
                   "--name", "spread", "--storage", str(storage), tracking_uri=proxy.uri)
    run.lines_until(lambda line: " epoch 1/2" in line)
    proxy.down()
    run.lines_until(lambda line: " finished: " in line)
    time.sleep(3)
    proxy.up()
    assert run.finish() == 0, run.output
    proxy.down()
    output = run.output
    assert "is unreachable" in output and "buffering" in output, output
    assert "reachable again" in output and "could not be logged" not in output, output
    assert "torch sees no CUDA device: running on CPU" in output  # a logical GPU, no CUDA here

    rows = env.rows("spread")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"FINISHED"}
    assert all(r["checkpoint_uri"].startswith(str(storage)) for r in rows)
    assert pq.read_table(storage / "spread" / "trials.parquet").num_rows == 4  # Parquet on --storage too

    children = env.children("spread")
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    assert {r["mlflow_run_id"] for r in rows} == {c.info.run_id for c in children}
    for child in children:
        assert _epochs_logged(env.client, child) == [1, 2]
        artifacts = {a.path for a in env.client.list_artifacts(child.info.run_id)}
        assert "curve.json" in artifacts
        # The checkpoint: a logged model, or (a trial that ended while the server was away) the
        # buffered `checkpoint/` artifact; either way exactly one place `orch evaluate` reads.
        assert len(child.outputs.model_outputs) + ("checkpoint" in artifacts) == 1
        curve = json.loads(open(env.client.download_artifacts(child.info.run_id, "curve.json",
                                                              str(env.base))).read())
        assert curve and all(0 <= p["accuracy"] <= 1 for p in curve)

    nodes = {c.data.tags["ray.node_id"] for c in children}
    intervals = [(c.info.start_time, c.info.end_time) for c in children]
    print(f"\nnode spread: {sorted(c.data.tags['ray.node_id'][:8] for c in children)}; "
          f"max concurrent trials: {_max_overlap(intervals)}")
    assert len(nodes) == 2
    assert 2 <= _max_overlap(intervals) <= 3
    for a in children:
        assert a.data.tags["cuda_visible_devices"] in {"0", "1"}
        for b in children:
            overlap = a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time
            if a is not b and overlap and a.data.tags["ray.node_id"] == b.data.tags["ray.node_id"]:
                assert a.data.tags["cuda_visible_devices"] != b.data.tags["cuda_visible_devices"]


def test_a_killed_trial_continues_from_its_checkpoint(env):
    run = env.orch("madry", "--gpus", "1", "--trials", "1", "--epochs", "3", "--max-failures", "1",
                   "--checkpoint-every", "0", "--name", "retry", "--storage", str(env.base / "shared"))
    run.lines_until(lambda line: " epoch 1/3" in line)
    wait_for(lambda: len(env.children("retry")) == 1 and "ray.pid" in env.children("retry")[0].data.tags,
             60, "the trial's pid in MLflow")
    pid = int(env.children("retry")[0].data.tags["ray.pid"])
    os.kill(pid, signal.SIGKILL)  # the trial's Ray worker process, mid-training
    assert run.finish() == 0, run.output

    [row] = env.rows("retry")
    assert row["status"] == "FINISHED" and row["epochs_completed"] == 3
    [child] = env.children("retry")
    assert child.info.status == "FINISHED"
    assert child.data.tags["orch.failures"] == "1"
    assert int(child.data.tags["ray.pid"]) != pid
    assert _epochs_logged(env.client, child) == [1, 2, 3]  # each epoch once
    # The restarted process continued after its checkpoint, not from zero: epoch 1 ran once.
    assert run.output.count(" epoch 1/3:") == 1, run.output


def test_a_killed_driver_is_resumed_without_losing_or_repeating_trials(env):
    run = env.orch("madry", "--gpus", "2", "--trials", "3", "--epochs", "3", "--name", "crash",
                   "--storage", str(env.base / "shared"))
    run.lines_until(lambda line: " finished: " in line)
    run.kill()  # SIGKILL: no callback, no cleanup runs
    rows_before = env.rows("crash")
    finished_before = {c.data.tags["trial_id"]: c for c in env.children("crash") if c.info.status == "FINISHED"}
    running_before = [c for c in env.children("crash") if c.info.status == "RUNNING"]
    assert finished_before and running_before

    resumed = Orch(["sweep", "madry", "--name", "crash", "--resume", "--results-dir", "results",
                    "--address", env.cluster.address], env.driver_env, env.cwd)
    assert resumed.finish() == 0, resumed.output
    rows = env.rows("crash")
    children = env.children("crash")
    all_runs = env.children("crash", ViewType.ALL)
    print(f"\nkill and resume: before: {len(rows_before)} Parquet rows, {len(finished_before)} finished "
          f"+ {len(running_before)} RUNNING child runs; after: {len(rows)} rows "
          f"({len({r['trial_id'] for r in rows})} trials), {len(children)} child runs "
          f"({sum(c.info.status == 'RUNNING' for c in children)} RUNNING), "
          f"{len(all_runs) - len(children)} deleted lost run(s)")

    assert len(rows) == 3 and len({r["trial_id"] for r in rows}) == 3
    assert {r["status"] for r in rows} == {"FINISHED"}
    assert len(children) == 3 and {c.info.status for c in children} == {"FINISHED"}
    assert {r["mlflow_run_id"] for r in rows} == {c.info.run_id for c in children}
    for child in children:
        assert _epochs_logged(env.client, child) == [1, 2, 3]
        trial_id = child.data.tags["trial_id"]
        if trial_id in finished_before:  # not rerun: the same run, untouched since it finished
            assert child.info.run_id == finished_before[trial_id].info.run_id
            assert child.info.end_time == finished_before[trial_id].info.end_time
    [parent] = [r for r in env.client.search_runs([children[0].info.experiment_id], "tags.sweep = 'crash'")
                if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED"
    study = optuna.load_study(study_name="crash", storage=f"sqlite:///{env.cwd}/results/crash/optuna.db")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3
    assert optuna.trial.TrialState.RUNNING not in states
