"""What a sweep records for MLflow's UI: curves as metric histories over ε, the search space on
the parent run, the best trial; and a real MLflow UI in headless Chromium showing them."""
import json

import pytest
import torch

from orchestrator.callbacks import EPS_STEP_SCALE, curve_metrics, from_origin
from orchestrator.search import describe_space
from orchestrator.tracking import best_trial_record, parent_params, search_space_record
from trainables.config import TrialConfig
from trainables.evaluate import robustness_curve
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
    assert set(histories) == {f"eval/quick/robust_acc/{a}" for a in attacks} | {"eval/quick/robust_acc/autoattack-base"}
    for attack in attacks:
        expected = [(round(p["eps"] * EPS_STEP_SCALE), p["accuracy"]) for p in curve if p["attack"] == attack]
        assert histories[f"eval/quick/robust_acc/{attack}"] == expected
        assert [step for step, _ in expected] == [0, 100, 200]


def test_parent_params_describe_the_search_not_the_defaults_it_replaces():
    base = TrialConfig(method="er-classifier").to_flat()
    record = search_space_record("er-classifier", "mnist-like", {"lambda": 0.5}, [{"embed_dim": 4}])
    params = parent_params(record, base, trials=8)
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
