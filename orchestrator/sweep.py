"""Build and run one sweep: Ray Tune schedules trials, Optuna proposes them, callbacks record."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from orchestrator import parquet
from orchestrator.callbacks import MlflowLogger, ParquetRecorder, SweepInfo
from orchestrator.search import first_points, search_space

OBJECTIVE = "val_robust_acc"  # validation split, worst case at the target ε: drives the search


@dataclass(frozen=True)
class SweepRequest:
    method: str
    name: str
    results_dir: Path
    tracking_uri: str
    trials: int
    base: dict[str, Any]  # the flat trial config every trial shares
    fixed: dict[str, Any]  # --set values: constants for every trial, never searched
    family: str
    gpus: float  # 0: CPU only
    gpus_per_trial: float
    cpus_per_trial: int
    seed: int

    @property
    def sweep_dir(self) -> Path:
        return self.results_dir / self.name

    @property
    def info(self) -> SweepInfo:
        return SweepInfo(self.name, self.method, self.base["dataset"], self.base["model"],
                         self.seed, self.base["epochs"], self.trials)


def experiment_name(dataset: str) -> str:
    """One MLflow experiment per dataset, so every method's runs on it compare side by side."""
    return f"orch-{dataset}"


def run_sweep(request: SweepRequest, out: TextIO | None = None) -> list[dict[str, Any]]:
    """Runs the sweep; returns the rows of trials.parquet."""
    import ray
    from mlflow.tracking import MlflowClient
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    from orchestrator.tune_adapter import trainable

    # MLflow and Parquet are our records; Tune keeps only its result.json (its ResultGrid reads it).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Keeping 2 checkpoints forces an experiment snapshot per epoch; on short epochs Tune warns.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    request.sweep_dir.mkdir(parents=True)
    client = MlflowClient(request.tracking_uri)
    experiment_id = _experiment_id(client, experiment_name(request.base["dataset"]))
    parent = client.create_run(experiment_id, run_name=request.name, tags={
        "sweep": request.name, "method": request.method, "dataset": request.base["dataset"],
        "model": request.base["model"], "objective": OBJECTIVE, "orch.role": "sweep"})
    parent_id = parent.info.run_id
    client.log_batch(parent_id, params=_params({"trials": request.trials, **request.base, **request.fixed}))

    mlflow_logger = MlflowLogger(request.tracking_uri, experiment_id, parent_id, request.info, request.base)
    recorder = ParquetRecorder(request.sweep_dir, request.info, mlflow_logger.run_ids.get, out)
    searcher = OptunaSearch(
        space=search_space(request.method, request.family, request.fixed),
        metric=OBJECTIVE, mode="max",
        points_to_evaluate=first_points(request.method, request.family, request.fixed),
        sampler=TPESampler(seed=request.seed),
    )
    resources = {"cpu": request.cpus_per_trial, "gpu": request.gpus_per_trial if request.gpus else 0}
    concurrency = math.floor(request.gpus / request.gpus_per_trial) if request.gpus else None

    if not ray.is_initialized():
        # Workers log at WARNING: one "checkpoint created" line per epoch would drown progress.
        ray.init(num_gpus=request.gpus or None, include_dashboard=False,
                 logging_config=ray.LoggingConfig(log_level="WARNING"))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, base=request.base), resources),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=request.trials,
                                    max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(
            name=request.name,
            storage_path=str((request.sweep_dir / "ray").resolve()),
            callbacks=[mlflow_logger, recorder, JsonLoggerCallback()],
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )
    status = "FAILED"
    try:
        tuner.fit()
        status = "FINISHED"
    finally:
        _close_parent(client, parent_id, request.sweep_dir, status)
    trials_path = request.sweep_dir / parquet.TRIALS_FILE
    return parquet.read_rows(trials_path) if trials_path.exists() else []


def _experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _params(values: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in sorted(values.items())]


def _close_parent(client, parent_id: str, sweep_dir: Path, status: str) -> None:
    """The parent run carries the sweep's Parquet files and its best validation score."""
    for name in (parquet.CURVES_FILE, parquet.TRIALS_FILE):
        if (sweep_dir / name).exists():
            client.log_artifact(parent_id, str(sweep_dir / name))
    trials_path = sweep_dir / parquet.TRIALS_FILE
    if trials_path.exists():
        scores = [r["val_robust_acc"] for r in parquet.read_rows(trials_path)
                  if r["status"] == "FINISHED" and r["val_robust_acc"] is not None]
        if scores:
            client.log_metric(parent_id, f"best_{OBJECTIVE}", max(scores))
    client.set_terminated(parent_id, status)
