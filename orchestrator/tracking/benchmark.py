"""A benchmark's leaderboard in MLflow: one parent run per benchmark (its tables and figures as
artifacts) with one child run per method (its numbers at the target ε as metrics, its verdict
and flags as tags). Logging again (a resumed benchmark) updates the same runs."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.report.benchmark import REFERENCE, Leaderboard
from orchestrator.tracking.runs import experiment_name, open_experiment
from orchestrator.tracking.store import create_store

ROLE = "benchmark"


def log_leaderboard(tracking_uri: str, name: str, merged: Leaderboard, files: list[Path]) -> str:
    """Returns the parent run's id. The parent is found by its name and reference: the same
    records compared with another method are another parent, so no run keeps a difference and a
    verdict against two different references."""
    create_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = open_experiment(client, tracking_uri, experiment_name(merged.dataset))
    parent = _parent(client, experiment_id, name, merged.reference)
    children = {run.data.tags.get("method"): run.info.run_id for run in client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent}'")}
    now = int(time.time() * 1000)
    for row in merged.rows:
        run_id = children.get(row["method"]) or client.create_run(
            experiment_id, run_name=f"{row['method']} ({name})",
            tags={"mlflow.parentRunId": parent, "method": row["method"], "orch.role": "benchmark-method"}).info.run_id
        metrics = _metrics(row, merged.reference)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items() if v == v],
                         params=[] if row["method"] in children else
                         [Param("seeds", str(row["seeds"])), Param("points", str(row["points"]))],
                         tags=[RunTag(k, v) for k, v in _tags(row).items()])
        client.set_terminated(run_id, "FINISHED")
    for path in files:
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, "FINISHED")
    return parent


def _parent(client: MlflowClient, experiment_id: str, name: str, reference: str) -> str:
    """The parent run of benchmark `name` compared with `reference`, made if new (runs logged
    before the reference was tagged were all compared with madry)."""
    found = [run for run in client.search_runs(
                 [experiment_id], f"tags.`orch.benchmark` = '{name}' AND tags.`orch.role` = '{ROLE}'")
             if run.data.tags.get("orch.reference", REFERENCE) == reference]
    if found:
        return found[0].info.run_id
    run_name = name if reference == REFERENCE else f"{name} (vs {reference})"
    return client.create_run(experiment_id, run_name=run_name, tags={
        "orch.benchmark": name, "orch.role": ROLE, "orch.reference": reference}).info.run_id


def _metrics(row: dict[str, Any], reference: str) -> dict[str, float]:
    """The row's numbers at the target ε; the difference is named after the method it is to."""
    metrics = {}
    for metric in ("clean", "autoattack", "worst"):
        estimate = row[metric]
        metrics.update({f"{metric}_acc": estimate.mean, f"{metric}_acc_low": estimate.low,
                        f"{metric}_acc_high": estimate.high})
    comparison = row["comparison"]
    if comparison is not None and comparison.verdict != "reference":
        difference = f"worst_vs_{reference}"
        metrics.update({difference: comparison.difference.mean, f"{difference}_low": comparison.difference.low,
                        f"{difference}_high": comparison.difference.high, "mcnemar_p": comparison.p_value})
    return {k: float(v) for k, v in metrics.items()}


def _tags(row: dict[str, Any]) -> dict[str, str]:
    return {"verdict": row["verdict"],
            "flags": ", ".join(row["flags"]) or "none", "config": row.get("config", "")[:5000]}
