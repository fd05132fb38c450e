"""A sweep's runs in MLflow: the experiment per dataset, the child runs of a parent, runs a
stopped sweep leaves in flight, and the best trial the parent run reports."""
from __future__ import annotations

from typing import Any

from orchestrator.tracking.store import create_experiment

# MLflow 3 opens an experiment in its GenAI view (traces) unless the experiment says it holds
# model training; the UI's own "Model training" choice sets this tag to this value.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"


def experiment_name(dataset: str) -> str:
    """One MLflow experiment per dataset, so every method's runs on it compare side by side."""
    return f"orch-{dataset}"


def open_experiment(client, tracking_uri: str, name: str) -> str:
    """The experiment, created when new (artifacts beside a SQLite store; see tracking.store), and
    tagged (again, for experiments older orch versions made) as model training so that MLflow's
    UI opens its runs, not its GenAI view."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else create_experiment(client, tracking_uri, name)
    if experiment is None or experiment.tags.get(EXPERIMENT_KIND_TAG) != TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return experiment_id


def child_runs(client, experiment_id: str, parent_run_id: str) -> dict[str, Any]:
    """trial_id -> the sweep's child run (MLflow is the record of which runs exist)."""
    runs: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        for run in page:
            runs.setdefault(run.data.tags.get("trial_id", run.info.run_id), run)
        token = page.token
        if not token:
            return runs


# orch.status while a run runs (set when it is created, and again when --resume reopens it):
# a resumed run must not keep the INTERRUPTED or FAILED of its last end, or a runs table filtered
# on the tag counts a running trial as interrupted.
RUNNING = {"orch.status": "RUNNING"}


def reopen(client, run_id: str) -> None:
    """A resumed run runs again, for MLflow and for orch.status."""
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, "orch.status", RUNNING["orch.status"])


def end_interrupted_runs(client, experiment_id: str, parent_run_id: str) -> int:
    """The runs of trials that were in flight end KILLED, tagged INTERRUPTED, and are kept: the
    resumed sweep continues them. Returns how many."""
    ended = 0
    for run in child_runs(client, experiment_id, parent_run_id).values():
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "orch.status", "INTERRUPTED")
            client.set_terminated(run.info.run_id, "KILLED")
            ended += 1
    return ended


def best_trial_record(rows: list[dict[str, Any]], objective: str) -> dict[str, dict[str, Any]] | None:
    """The finished trial with the highest `objective` (what the search maximised) as the
    parent's best.* tags (its ids and hyperparameters: tags, since a resumed sweep may find
    another best) and metrics; None when no trial finished."""
    finished = [r for r in rows if r["status"] == "FINISHED" and r.get(objective) is not None]
    if not finished:
        return None
    best = max(finished, key=lambda r: r[objective])
    hparams = {f"best.{k.removeprefix('hp_')}": str(v) for k, v in best.items()
               if k.startswith("hp_") and v is not None}
    return {
        "tags": {"best.trial_id": best["trial_id"], "best.run_id": best["mlflow_run_id"] or "",
                 "best.config_id": best.get("config_id") or "", **hparams},
        "metrics": {f"best.{name}": best[column] for name, column in (
            (objective, objective), ("test_robust_acc", "robust_acc"), ("test_clean_acc", "clean_acc"))
            if best.get(column) is not None},
    }
