"""What a sweep records for MLflow's UI: curves as metric histories over ε, the search space on
the parent run, the best trial; and a real MLflow UI in headless Chromium showing them."""
import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from cluster_helpers import MlflowServer
from conftest import FAST
from headless_chromium import find_or_install_chromium, open_page
from orchestrator.records.results import from_origin
from orchestrator.tracking.logger import (
    EPS_STEP_SCALE, at_target, child_run_name, compared_metrics, curve_metrics, diagnostics)
from orchestrator.cli import main
from orchestrator.sweep.space import describe_space
from orchestrator.sweep.run import SEARCH_SPACE_FILE
from orchestrator.sweep.space import parent_params, search_space_record
from orchestrator.tracking.runs import EXPERIMENT_KIND_TAG, TRAINING_KIND, best_trial_record
from trainables.config import TrialConfig
from trainables.evaluate import robustness_curve
from trainables.protocol import resolve_protocol
from trainables.selection import STRONG_METRIC
from trainables.trial import build_method

EPS_GRID = (0.1, 0.2)  # as a trial's protocol holds it: ε = 0 is never attacked


@pytest.fixture(scope="module")
def real_curve(digits):
    """The quick profile's curve of an untrained model, as a trial reports it."""
    torch.manual_seed(0)
    method = build_method(TrialConfig(method="standard"), digits, torch.device("cpu"))
    points = robustness_curve(method, digits.test.head(64), EPS_GRID, pgd_steps=2)
    return [p.as_dict() for p in points]


def test_every_attack_starts_at_clean_accuracy_at_eps_0(real_curve):
    assert not [p for p in real_curve if p["eps"] == 0 and p["attack"] != "clean"]
    curve = from_origin(real_curve)
    clean = next(p["accuracy"] for p in real_curve if p["attack"] == "clean")
    attacks = {p["attack"] for p in real_curve} - {"clean"}
    origins = [p for p in curve if p["eps"] == 0 and p["attack"] != "clean"]
    assert sorted(p["attack"] for p in origins) == sorted(attacks)
    for origin in origins:
        assert origin["accuracy"] == clean
        budget = {(p["steps"], p["restarts"], p["norm"]) for p in real_curve if p["attack"] == origin["attack"]}
        assert budget == {(origin["steps"], origin["restarts"], origin["norm"])}  # one line per attack in reports
    assert curve[len(origins) + 1:] == real_curve[1:]
    assert from_origin(curve) == curve  # a curve that has its origin keeps it once


def test_curve_metrics_put_eps_on_the_step_axis_one_history_per_attack(real_curve):
    curve = from_origin(real_curve)
    with_base = curve + [{**curve[-1], "attack": "autoattack", "path": "base"}]
    metrics = curve_metrics(with_base, timestamp_ms=1, prefix="eval/quick/")
    histories = {}
    for metric in metrics:
        histories.setdefault(metric.key, []).append((metric.step, metric.value))
    attacks = {p["attack"] for p in real_curve} - {"clean"}
    assert set(histories) == {f"eval/quick/curve/{a}" for a in attacks} | {"eval/quick/curve/autoattack-base"}
    for attack in attacks:
        expected = [(round(p["eps"] * EPS_STEP_SCALE), p["accuracy"]) for p in curve if p["attack"] == attack]
        assert histories[f"eval/quick/curve/{attack}"] == expected
        assert [step for step, _ in expected] == [0, 100, 200]
    at_target_only = curve + [{**curve[-1], "attack": "square", "eps": 0.1}]
    assert not [m for m in curve_metrics(at_target_only, timestamp_ms=1) if m.key == "curve/square"]


def test_at_target_holds_each_attack_alone_at_the_target_eps(real_curve):
    curve = from_origin(real_curve)
    values = at_target(curve, target_eps=0.2)
    attacks = {p["attack"] for p in real_curve} - {"clean", "worst"}
    assert values == {f"test_acc_at_target/{p['attack']}": p["accuracy"] for p in curve
                      if p["eps"] == 0.2 and p["attack"] in attacks}
    assert len(values) == len(attacks)  # the worst case is test_robust_acc, clean test_clean_acc


def test_diagnostics_are_not_metrics():
    result = {"loss": 0.3, "val_robust_acc": 0.5, "test_robust_acc": 0.4, "target_eps": 0.1,
              "evaluated_epoch": 3, "search_robust_acc": 0.5, "blackbox_gap/square/eps_0.1000": 0.01,
              "blackbox_gap/square/eps_0.1000/low": -0.02, "collapsed": False, "node_id": "n"}
    assert compared_metrics(result) == {"loss": 0.3, "val_robust_acc": 0.5, "test_robust_acc": 0.4}
    kept = diagnostics(result)
    assert {"target_eps", "evaluated_epoch", "blackbox_gap/square/eps_0.1000/low"} <= set(kept)


def test_a_child_run_name_starts_with_its_trial_id_then_its_searched_values():
    name = child_run_name("3f2a1_00004", {"lambda": 0.52341, "embed_dim": 8, "lr": 0.001, "seed": 1},
                          ("lambda", "embed_dim"))
    assert name == "3f2a1_00004 lambda=0.523 embed_dim=8 seed=1"


def test_parent_params_describe_the_search_not_the_defaults_it_replaces():
    base = TrialConfig(method="er-classifier").to_flat()
    record = search_space_record("er-classifier", "mnist-like", {"lambda": 0.5}, [{"embed_dim": 4}])
    params = parent_params(record, base, trials=8, family="mnist-like")
    # The ε values the dataset's protocol gave, not the config's unset () and None.
    protocol = resolve_protocol(TrialConfig.from_flat(base), "mnist-like")
    assert params["target_eps"] == protocol.target_eps and params["eps_grid"].endswith("0.3")
    searched = {d["name"] for d in record["searched"]}
    assert searched == {"embed_dim", "prior", "base", "train_eps", "lr"}  # lambda is fixed by --set
    assert not searched & set(params)  # no default poses as the value of a searched key
    assert params["lambda"] == 0.5 and params["trials"] == 8 and params["epochs"] == base["epochs"]
    described = dict(line.split(": ", 1) for line in describe_space("er-classifier", "mnist-like"))
    assert {k: v for k, v in params.items() if k.startswith("search.")} == {
        f"search.{name}": described[name] for name in searched}
    assert json.loads(json.dumps(record)) == record  # search_space.json holds it as is


def test_best_trial_is_the_finished_one_the_search_ranked_first():
    rows = [
        {"trial_id": "a", "status": "FINISHED", "val_robust_acc": 0.2, "robust_acc": 0.1, "clean_acc": 0.9,
         "mlflow_run_id": "r1", "config_id": "c1", "hp_lambda": 0.1},
        {"trial_id": "b", "status": "FINISHED", "val_robust_acc": 0.4, "robust_acc": 0.3, "clean_acc": 0.8,
         "mlflow_run_id": "r2", "config_id": "c2", "hp_lambda": 0.7},
        {"trial_id": "c", "status": "FAILED", "val_robust_acc": 0.9, "robust_acc": None, "clean_acc": None,
         "mlflow_run_id": "r3", "config_id": "c3", "hp_lambda": 9.0},
    ]
    best = best_trial_record(rows, "val_robust_acc")
    assert best["tags"] == {"best.trial_id": "b", "best.run_id": "r2", "best.config_id": "c2", "best.lambda": "0.7"}
    assert best["metrics"] == {"best.val_robust_acc": 0.4, "best.test_robust_acc": 0.3, "best.test_clean_acc": 0.8}
    assert best_trial_record(rows[2:], "val_robust_acc") is None


# --- a real sweep, a real MLflow server, a real browser ----------------------------------------

SWEEP = "ui"
# The MLflow UI asks the server who the user is; a server without authentication answers 404.
NO_AUTH_PROBE = "/ajax-api/2.0/mlflow/users/current"


@pytest.fixture(scope="module")
def served_sweep(tmp_path_factory):
    """A two-trial sweep logged to a real `mlflow server`: (server URI, sweep folder)."""
    base = tmp_path_factory.mktemp("mlflow-ui")
    server = MlflowServer(base)
    try:
        server.wait()
        result = CliRunner().invoke(main, ["sweep", "standard", "--trials", "2", "--epochs", "2", "--name", SWEEP,
                                           "--results-dir", str(base / "results"), "--tracking-uri", server.uri, *FAST])
        assert result.exit_code == 0, result.output + str(result.exception)
        yield server.uri, base / "results" / SWEEP
    finally:
        server.stop()


def _runs(client: MlflowClient) -> tuple[str, Run, list[Run]]:
    experiment = client.get_experiment_by_name("orch-digits")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return experiment.experiment_id, parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


@pytest.mark.integration
def test_mlflow_holds_the_curves_search_space_best_trial_datasets_and_models(served_sweep):
    uri, sweep_dir = served_sweep
    client = MlflowClient(uri)
    experiment_id, parent, children = _runs(client)
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    curves = pd.read_parquet(sweep_dir / "curves.parquet")
    trials = pd.read_parquet(sweep_dir / "trials.parquet")
    assert len(children) == 2 == len(trials)
    for child in children:
        mine = curves[curves["mlflow_run_id"] == child.info.run_id]
        clean = mine[mine["attack"] == "clean"]["accuracy"].item()
        attacked = mine[mine["attack"] != "clean"]
        for attack, points in attacked.groupby("attack"):
            points = points.sort_values("eps")
            if points["eps"].max() < attacked["eps"].max():  # run at the target only: not a curve
                assert client.get_metric_history(child.info.run_id, f"curve/{attack}") == []
                continue
            assert points["eps"].iloc[0] == 0 and points["accuracy"].iloc[0] == clean  # from the origin
            history = sorted(client.get_metric_history(child.info.run_id, f"curve/{attack}"), key=lambda m: m.step)
            assert [(m.step, m.value) for m in history] == [
                (round(eps * EPS_STEP_SCALE), acc) for eps, acc in zip(points["eps"], points["accuracy"])]
        (data,) = child.inputs.dataset_inputs
        assert data.dataset.name == "digits" and len(data.dataset.digest) == 16
        assert json.loads(data.dataset.profile)["splits"]["test"] == 359  # scikit-learn's digits: 20% of 1797
        (output,) = child.outputs.model_outputs
        assert client.get_logged_model(output.model_id).source_run_id == child.info.run_id
    # The parent: what was searched, not the defaults it replaced; the best trial at the end.
    searched = json.loads(open(client.download_artifacts(parent.info.run_id, SEARCH_SPACE_FILE)).read())["searched"]
    assert {d["name"] for d in searched} == {"embed_dim", "lr"}
    assert {"search.embed_dim", "search.lr"} <= set(parent.data.params)
    assert not {"embed_dim", "lr"} & set(parent.data.params)
    best = trials.sort_values(STRONG_METRIC, ascending=False).iloc[0]
    assert parent.data.tags["best.trial_id"] == best["trial_id"]
    assert parent.data.tags["best.run_id"] == best["mlflow_run_id"]
    assert parent.data.metrics["best.test_robust_acc"] == best["robust_acc"]


def _row_texts(page) -> list[str]:
    """Each row of the runs table as text (its pinned and scrolled parts are separate elements)."""
    return page.evaluate(
        "(() => { const rows = {}; document.querySelectorAll('.ag-row').forEach(r => {"
        " const i = r.getAttribute('row-index'); rows[i] = (rows[i] || '') + '\\n' + r.innerText; });"
        " return Object.values(rows); })()")


# The chart card of curve/worst: each plotted run's (steps, values), once per run (MLflow
# draws a run's line and its markers as two traces).
WORST_CHART = (
    "(() => { const cards = Array.from(document.querySelectorAll('[data-testid=experiment-view-compare-runs-card]'))"
    ".filter(c => c.innerText.startsWith('curve/worst\\n'));"
    " const plot = cards.length === 1 && cards[0].querySelector('.js-plotly-plot');"
    " if (!plot || !plot.data || !plot.data.length) return null;"
    " return Object.fromEntries(plot.data.map(t => [t.name, Array.from(t.x).map((x, i) => [x, t.y[i]])])); })()")
# Messages the MLflow UI itself causes on a healthy server: it asks who the user is (404 without
# authentication), cancels its own superseded requests, and its resizing charts trip the
# browser's ResizeObserver notice.
BENIGN = (NO_AUTH_PROBE, "net::ERR_ABORTED", "ResizeObserver loop completed with undelivered notifications")


def _keep(page, name: str, tmp_path: Path) -> Path:
    """A screenshot of what is on screen (docs/mlflow/screenshots.py takes the docs' own)."""
    path = tmp_path / name
    page.screenshot(path, full_page=False)
    return path


@pytest.mark.integration
def test_the_mlflow_ui_nests_the_trials_and_overlays_their_curves(served_sweep, tmp_path):
    chromium = find_or_install_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    uri, sweep_dir = served_sweep
    experiment_id, parent, children = _runs(MlflowClient(uri))
    names = sorted(c.info.run_name for c in children)
    curves = pd.read_parquet(sweep_dir / "curves.parquet")
    with open_page(chromium, width=1500, height=800) as page:
        # MLflow 3.17 picks the view by a sidebar switch that this parameter sets.
        page.navigate(f"{uri}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
        page.wait_until(f"document.body.innerText.includes('{SWEEP}') && document.querySelectorAll('.ag-row').length", 120)
        assert "Model training" in page.evaluate("document.body.innerText")
        assert not any(name in text for text in _row_texts(page) for name in names)  # folded under the sweep
        page.evaluate("document.querySelectorAll('button[aria-label=\"Close\"]').forEach(b => b.click())")  # the assistant
        page.evaluate("document.querySelector('.ag-row button[data-component-id*=runnamecellrenderer]').click()")
        page.wait_until(" && ".join(f"document.body.innerText.includes('{name}')" for name in names), 60)
        rows = {name: next(t for t in _row_texts(page) if name in t) for name in names}
        for name, text in rows.items():  # the Dataset and Models columns: each trial's own model
            trial_id = name.split(" ")[0]
            assert "digits" in text and f"{trial_id}-standard" in text, text
        _keep(page, "runs-table.png", tmp_path)

        page.evaluate("document.querySelector('input[name=\"runs-view-mode\"][value=\"CHART\"]').click()")
        page.wait_until("!!document.querySelector('input[placeholder=\"Search metric charts\"]')", 60)
        page.evaluate("document.querySelector('input[placeholder=\"Search metric charts\"]').focus()")
        page.send("Input.insertText", {"text": "curve/worst"})
        drawn = page.wait_until(WORST_CHART, 90)
        assert sorted(drawn) == names  # the two nested trials, overlaid
        for child in children:
            worst = curves[(curves["mlflow_run_id"] == child.info.run_id) & (curves["attack"] == "worst")].sort_values("eps")
            assert drawn[child.info.run_name] == [[round(e * EPS_STEP_SCALE), a] for e, a in zip(worst["eps"], worst["accuracy"])]
        page.evaluate("document.querySelector('[data-testid=experiment-view-compare-runs-card] "
                      "[data-component-id=fullscreen_button_chartcard]').click()")
        page.wait_until("!!document.querySelector('[role=dialog] .js-plotly-plot .scatterlayer .trace')", 60)
        time.sleep(1)  # the enlarged chart's entry animation
        _keep(page, "curves.png", tmp_path)
        errors = [e for e in page.errors() if not any(benign in e for benign in BENIGN)]
    assert errors == []
