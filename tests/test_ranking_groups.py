"""`orch compare` ranks like with like: two real sweeps at different target ε are never ranked
together, and the quick profile's numbers are labelled as upper bounds everywhere they are
recorded (trials.parquet, MLflow tags, the compare table)."""
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from conftest import FAST
from orchestrator.cli import main

pytestmark = pytest.mark.integration

SWEEPS = {"at-0.1": "0.1", "at-0.2": "0.2"}  # sweep name -> target ε


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("groups")
    uri = f"sqlite:///{tmp}/mlflow.db"
    for name, eps in SWEEPS.items():
        result = CliRunner().invoke(main, [
            "sweep", "madry", "--trials", "1", "--epochs", "1", "--name", name,
            "--results-dir", str(tmp / "results"), "--tracking-uri", uri,
            "--set", f"target_eps={eps}", *FAST])
        assert result.exit_code == 0, result.output + str(result.exception)
        assert "upper bound" in result.output  # the sweep's own summary says so too
    return tmp / "results", MlflowClient(uri)


def test_sweeps_at_different_target_eps_are_ranked_in_separate_tables(sweeps):
    results, _ = sweeps
    result = CliRunner().invoke(main, ["compare", *(str(results / name) for name in SWEEPS)])
    assert result.exit_code == 0, result.output
    tables = result.output.strip().split("\n\n")
    assert tables[0].startswith("2 groups of (dataset, target ε, evaluation profile)")
    for table, (name, eps) in zip(tables[1:], SWEEPS.items()):
        title, header, *rows = table.splitlines()
        assert title.startswith(f"digits, target ε={eps}, quick profile")
        assert "UPPER BOUND" in title
        assert header.split()[:6] == ["rank", "method", "sweep", "dataset", "target", "ε"]
        # Each table ranks one sweep alone: its row is rank 1 and names its own ε.
        assert len(rows) == 1 and rows[0].split()[:6] == ["1", "madry", name, "digits", eps, "quick"]
        assert "(upper bound)" in rows[0]


def test_quick_trials_are_recorded_as_upper_bounds(sweeps):
    results, client = sweeps
    for name in SWEEPS:
        trials = pd.read_parquet(results / name / "trials.parquet")
        assert list(trials["eval_profile"]) == ["quick"]
        assert list(trials["robust_is_upper_bound"]) == [True]
        run = client.get_run(trials["mlflow_run_id"].iloc[0])
        assert run.data.tags["orch.upper_bound"] == "true" and run.data.tags["eval_profile"] == "quick"
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        assert parent.data.tags["orch.upper_bound"] == "true"
