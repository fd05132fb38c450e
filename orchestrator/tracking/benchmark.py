"""A benchmark's leaderboard in MLflow: one parent run per benchmark (its tables and figures as
artifacts) with one child run per method (its numbers at the target ε as metrics, its verdict
and flags as tags). Logging again (a resumed benchmark) updates the same runs."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.tracking.runs import experiment_name, open_experiment
from orchestrator.tracking.store import create_store

ROLE = "benchmark"


def log_leaderboard(tracking_uri: str, name: str, dataset: str, board: list[dict[str, Any]],
                    files: list[Path]) -> str:
    """Returns the parent run's id."""
    create_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = open_experiment(client, tracking_uri, experiment_name(dataset))
    parent = _run(client, experiment_id, f"tags.`orch.benchmark` = '{name}' AND tags.`orch.role` = '{ROLE}'",
                  name, {"orch.benchmark": name, "orch.role": ROLE})
    children = {run.data.tags.get("method"): run.info.run_id for run in client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent}'")}
    now = int(time.time() * 1000)
    for row in board:
        run_id = children.get(row["method"]) or client.create_run(
            experiment_id, run_name=f"{row['method']} ({name})",
            tags={"mlflow.parentRunId": parent, "method": row["method"], "orch.role": "benchmark-method"}).info.run_id
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in _metrics(row).items() if v == v],
                         params=[] if row["method"] in children else
                         [Param("seeds", str(row["seeds"])), Param("points", str(row["points"]))],
                         tags=[RunTag(k, v) for k, v in _tags(row).items()])
        client.set_terminated(run_id, "FINISHED")
    for path in files:
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, "FINISHED")
    return parent


def _run(client: MlflowClient, experiment_id: str, query: str, name: str, tags: dict[str, str]) -> str:
    found = client.search_runs([experiment_id], query, max_results=1)
    return found[0].info.run_id if found else client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    metrics = {}
    for metric in ("clean", "autoattack", "worst"):
        estimate = row[metric]
        metrics.update({f"{metric}_acc": estimate.mean, f"{metric}_acc_low": estimate.low,
                        f"{metric}_acc_high": estimate.high})
    comparison = row["comparison"]
    if comparison is not None and comparison.verdict != "reference":
        metrics.update({"worst_vs_madry": comparison.difference.mean, "worst_vs_madry_low": comparison.difference.low,
                        "worst_vs_madry_high": comparison.difference.high, "mcnemar_p": comparison.p_value})
    return {k: float(v) for k, v in metrics.items()}


def _tags(row: dict[str, Any]) -> dict[str, str]:
    return {"verdict": row["verdict"],
            "flags": ", ".join(row["flags"]) or "none", "config": row.get("config", "")[:5000]}
