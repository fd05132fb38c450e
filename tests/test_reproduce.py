"""`orch reproduce`: real sweeps (local Ray, SQLite MLflow, Parquet) of two methods on a tiny
preset, then the measured-vs-claimed table and page, checked against the Parquet rows."""
from __future__ import annotations

import csv

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from orchestrator.report import reproduce
from orchestrator.cli import main
from orchestrator.cluster.connect import local_cluster
from orchestrator.report.reproduce import Preset
from search_spaces import get_space

# Two real sweeps with the standard evaluation (AutoAttack included): about a minute on a quiet
# 2-core machine, many more when it is shared.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

TINY = Preset(dataset="digits", model="small-cnn", epochs=1, claims="mnist", eval_examples=16,
              sets={"eps_grid": "0.1,0.3", "val_examples": "16", "val_steps": "2", "eval_steps": "3",
                    "train_steps": "1", "eval_sanity_examples": "8", "eval_sanity_queries": "10"})
METHODS = ("standard", "madry")


def _invoke(tmp_path, *args):
    return CliRunner().invoke(main, ["reproduce", *args, "--results-dir", str(tmp_path / "results"),
                                     "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reproduce")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(reproduce.PRESETS, "tiny", TINY)
        result = _invoke(tmp_path, "tiny", "--methods", ",".join(METHODS), "--name", "r")
        assert result.exit_code == 0, result.output + repr(result.exception)
        resumed = _invoke(tmp_path, "tiny", "--methods", ",".join(METHODS), "--name", "r", "--resume")
    return tmp_path, tmp_path / "results" / "r", result, resumed


def _trial(root, method):
    rows = pq.read_table(root / method / "trials.parquet").to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "FINISHED"
    return rows[0]


def test_each_method_is_a_recorded_sweep_of_its_paper_defaults(reproduced):
    tmp_path, root, _, _ = reproduced
    for method in METHODS:
        trial = _trial(root, method)
        defaults = get_space(method).paper_defaults("mnist-like")
        assert trial["hp_lr"] == defaults["lr"] and trial["hp_embed_dim"] == defaults["embed_dim"]
        assert trial["autoattack_acc"] is not None  # the standard evaluation ran
    runs = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").search_runs(
        [MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_experiment_by_name("orch-digits").experiment_id])
    assert sorted(r.info.run_name for r in runs if r.data.tags.get("orch.role") == "sweep") == sorted(METHODS)


def test_the_table_puts_measured_numbers_beside_the_claims(reproduced):
    _, root, result, _ = reproduced
    with (root / "reproduce.csv").open() as f:
        rows = {row["method"]: row for row in csv.DictReader(f)}
    assert list(rows) == list(METHODS)
    markdown = (root / "reproduce.md").read_text()
    for method in METHODS:
        trial, row, claim = _trial(root, method), rows[method], get_space(method).PAPER_CLAIMS["mnist"]
        assert float(row["clean_acc_mean"]) == pytest.approx(trial["clean_acc"])
        assert float(row["robust_acc_mean"]) == pytest.approx(trial["robust_acc"])
        assert float(row["autoattack_acc_mean"]) == pytest.approx(trial["autoattack_acc"])
        assert float(row["paper_clean_percent"]) == claim["clean"]
        line = next(l for l in markdown.splitlines() if l.startswith(f"| {method} |"))
        assert f"{100 * trial['clean_acc']:.1f}" in line and claim["source"] in line
    assert "| — |" in markdown  # trades' and madry's missing claims show as a dash
    page = (root / "reproduce.html").read_text()
    assert "<img src=\"data:image/png;base64," in page and "madry" in page
    assert "madry" in result.output
    # --seeds 1: each method's lone trial trains and attacks with every core.
    assert f"CPU only, {int(local_cluster().largest_node_cpus)} CPU per trial" in result.output


def test_resume_keeps_finished_methods(reproduced):
    _, root, _, resumed = reproduced
    assert resumed.exit_code == 0, resumed.output
    assert "(2 already done)" in resumed.output
    for method in METHODS:
        _trial(root, method)  # still exactly one finished trial each


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown preset 'nope'"),
    (["mnist-cpu"], "needs --data-dir"),
    (["mnist-cpu", "--data-dir", ".", "--methods", "madry,foo"], "--methods: unknown foo"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = _invoke(tmp_path, *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "results").exists()
