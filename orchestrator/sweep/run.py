"""Run one sweep: Ray Tune schedules trials, Optuna proposes them, the MLflow logger and the
Parquet recorder record them; the parent run opens before the first trial and closes after the
last. `run_or_exit` is what the commands call: it says how to continue an interrupted sweep."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import click
import optuna
import ray
from mlflow.entities import Metric, Param, RunTag
from optuna.samplers import TPESampler
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler

from orchestrator.cluster.connect import connect, start_local
from orchestrator.records import parquet
from orchestrator.records.recorder import ParquetRecorder
from orchestrator.records.storage import ParquetMirror, default_storage, experiment_path
from orchestrator.report.figures import summary_figures
from orchestrator.sweep.interrupt import StopForwarder, StopWatch, SweepInterrupted, resume_command
from orchestrator.sweep.interrupt import received as stop_signal
from orchestrator.sweep.request import OBJECTIVES, SweepRequest
from orchestrator.sweep.resume import SavedSweep, reconcile, save_sweep, study_uri
from orchestrator.sweep.searchers import PruningOptunaSearch, SeedRepeater
from orchestrator.sweep.space import first_points, parent_params, search_space, search_space_record
from orchestrator.sweep.trainable import trainable
from orchestrator.tracking.client import BufferedMlflow, bound_http_retries, is_transient, report_unlogged
from orchestrator.tracking.logger import MlflowLogger
from orchestrator.tracking.runs import (
    RUNNING, best_trial_record, child_runs, end_interrupted_runs, experiment_name, open_experiment, reopen)
from orchestrator.tracking.store import create_store
from trainables.selection import RUNG_METRIC, STRONG_METRIC

SEARCH_SPACE_FILE = "search_space.json"  # the parent run's record of what the sweep searched


class SweepFailed(click.ClickException):
    """Every trial of a sweep failed: one line naming the first error, exit code 1."""

    def show(self, file=None) -> None:
        click.echo(f"orch: error: {self.format_message()}", err=True)


def run_or_exit(request: SweepRequest, continue_with: str | None = None) -> list[dict[str, Any]]:
    """Runs the sweep and returns its trials' rows. On SIGINT/SIGTERM says how to continue it
    (`continue_with`: the command of the reproduce or benchmark run it belongs to) and exits 128 + the
    signal; raises SweepFailed when no trial finished because every one failed."""
    try:
        rows = run_sweep(request)
    except SweepInterrupted as stop:
        if stop.resumable:
            command = continue_with or resume_command(request.method, request.name, str(request.results_dir))
            click.echo(f"[orch] sweep {request.name} interrupted by {stop}; its state is saved. "
                       f"Continue it with:\n  {command}", err=True)
        else:
            click.echo(f"[orch] sweep {request.name} interrupted by {stop} before any trial started; "
                       f"nothing to resume: start it again under a new --name", err=True)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:  # a second signal: stopped at once, without Tune's last snapshot
        click.echo(f"[orch] sweep {request.name} stopped at once; --resume continues it from Tune's "
                   "last snapshot", err=True)
        sys.exit(128 + (stop_signal() or 2))
    failed = [r for r in rows if r["status"] == "FAILED"]
    if rows and len(failed) == len(rows):
        raise SweepFailed(f"every trial of sweep {request.name} failed ({len(failed)}); the first: "
                          f"{failed[0]['error']}")
    return rows

def run_sweep(request: SweepRequest, out: TextIO | None = None) -> list[dict[str, Any]]:
    """Runs the sweep (or continues it, for request.resume); returns the rows of trials.parquet."""
    # MLflow and Parquet are our records; Tune keeps only its result.json (its ResultGrid reads it).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Keeping 1 checkpoint forces an experiment snapshot per trial checkpoint (see _new_tuner);
    # on short epochs Tune warns about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # orch prints where its results are; MLflow's own "View run" links would repeat it per trial.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    bound_http_retries()
    with StopWatch() as watch:
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Both take seconds and mostly wait: a new SQLite store runs MLflow's migrations, Ray
            # starts its processes. Overlapped, they cost the longer of the two, not the sum.
            opening = pool.submit(_open_records, request)
            _start_ray(request)
            watch.install()  # ray.init set its own SIGTERM handler
            mlflow, experiment_id, parent_id = opening.result()
        tune_state = request.resume is not None  # whether Tune holds a state to resume from
        status = "FAILED"
        try:
            if stop_signal() is None:  # a signal during the setup: no trial has started
                tuner = (_restored_tuner(request) if request.resume
                         else _new_tuner(request, experiment_id, parent_id, out))
                tune_state = True
                tuner.fit()
            if stop_signal() is None:
                status = "FINISHED"
                _reconcile(mlflow, experiment_id, parent_id, request.sweep_dir)
            else:
                _note_interrupted(mlflow, experiment_id, parent_id)
        finally:
            # A second signal (KeyboardInterrupt) skips the rest, but the parent stays resumable.
            _close_parent(mlflow, parent_id, request.sweep_dir, "INTERRUPTED" if stop_signal() else status)
            report_unlogged(mlflow.close())
    if stop_signal() is not None:
        raise SweepInterrupted(stop_signal(), resumable=tune_state)
    trials_path = request.sweep_dir / parquet.TRIALS_FILE
    return parquet.read_rows(trials_path) if trials_path.exists() else []


def _note_interrupted(mlflow: BufferedMlflow, experiment_id: str, parent_id: str) -> None:
    ended = end_interrupted_runs(mlflow, experiment_id, parent_id)
    click.echo(f"[orch] stopped: {ended} trial(s) in flight kept in MLflow as KILLED "
               "(tag orch.status=INTERRUPTED), to continue from their last checkpoints", err=True)


def _start_ray(request: SweepRequest) -> None:
    if request.address is not None and not ray.is_initialized():
        connect(request.address)
    elif request.address is None:  # a resumed sweep's restored state is staged in Ray's temp folder
        start_local(request.gpus, private=request.resume is not None)


def _open_records(request: SweepRequest) -> tuple[BufferedMlflow, str, str]:
    create_store(request.tracking_uri)  # once, under a lock: sweeps started together all run
    mlflow = BufferedMlflow(request.tracking_uri)
    return (mlflow, *_open_parent(mlflow, request))


def _open_parent(mlflow: BufferedMlflow, request: SweepRequest) -> tuple[str, str]:
    """(experiment id, parent run id): created for a new sweep (the server was checked at the
    start, so failing here is loud), reopened for a resumed one."""
    if request.resume:
        reopen(mlflow, request.resume.parent_run_id)
        return request.resume.experiment_id, request.resume.parent_run_id
    request.sweep_dir.mkdir(parents=True)
    client = mlflow.client
    experiment_id = open_experiment(client, request.tracking_uri, experiment_name(request.base["dataset"]))
    parent_id = unfinished_setup(client, experiment_id, request.name) or client.create_run(
        experiment_id, run_name=request.name, tags={
            "sweep": request.name, "method": request.method, "dataset": request.base["dataset"],
            "model": request.base["model"], "objective": request.objective,
            "eval_profile": request.info.eval_profile,
            "orch.upper_bound": str(request.info.is_upper_bound({})).lower(),
            "seeds": str(request.seeds), "orch.role": "sweep", **RUNNING}).info.run_id
    _log_search_space(client, parent_id, request)
    save_sweep(request.sweep_dir, SavedSweep(request.settings, experiment_id, parent_id, request.cpus_per_trial))
    return experiment_id, parent_id


def unfinished_setup(client, experiment_id: str, name: str) -> str | None:
    """The parent run of sweep `name` whose driver died while setting it up (before sweep.json
    was saved, so before any trial: the run has no children), to reuse instead of a second one."""
    runs = client.search_runs([experiment_id], f"tags.sweep = '{name}' AND tags.`orch.role` = 'sweep' "
                                               "AND attributes.status = 'RUNNING'")
    empty = [run for run in runs if not child_runs(client, experiment_id, run.info.run_id)]
    return empty[0].info.run_id if empty else None


def _log_search_space(client, parent_id: str, request: SweepRequest) -> None:
    """The parent run records what the sweep searched, not the defaults the search replaces."""
    first = first_points(request.method, request.family, request.fixed, request.eps_scale)
    record = search_space_record(request.method, request.family, request.fixed, first, request.eps_scale)
    client.log_batch(parent_id, params=_params(parent_params(record, request.base, request.trials, request.family)))
    client.log_dict(parent_id, record, SEARCH_SPACE_FILE)


def _trainable(request: SweepRequest):
    cpus = request.cpu_share if request.cpu_share is not None else request.cpus_per_trial
    resources = {"cpu": cpus, "gpu": request.gpus_per_trial if request.gpus else 0}
    return tune.with_resources(
        tune.with_parameters(trainable, base=request.base, checkpoint_every_s=request.checkpoint_every_s),
        resources)


def _new_tuner(request: SweepRequest, experiment_id: str, parent_id: str, out: TextIO | None):
    first = first_points(request.method, request.family, request.fixed, request.eps_scale)
    searched = search_space_record(request.method, request.family, request.fixed, first, request.eps_scale)["searched"]
    mlflow_logger = MlflowLogger(request.tracking_uri, experiment_id, parent_id, request.info, request.base,
                                 family=request.family, searched=tuple(d["name"] for d in searched))
    callbacks = [mlflow_logger, ParquetRecorder(request.sweep_dir, request.info, mlflow_logger.run_id_of, out)]
    if request.storage_path != default_storage(request.sweep_dir):
        callbacks.append(ParquetMirror(request.sweep_dir, request.storage_path, request.name))
    metrics = OBJECTIVES[request.objective]
    searcher = PruningOptunaSearch(
        space=search_space(request.method, request.family, request.fixed, request.eps_scale),
        # One metric: single-objective TPE. A list: multi-objective, Optuna keeps the Pareto front.
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=["max"] * len(metrics) if len(metrics) > 1 else "max",
        points_to_evaluate=first_points(request.method, request.family, request.fixed, request.eps_scale),
        sampler=TPESampler(seed=request.seed),
        # A study on disk continues after a crash where it was, and reports can read it.
        storage=optuna.storages.RDBStorage(study_uri(request.sweep_dir)), study_name=request.name,
    )
    if request.seeds > 1:
        searcher = SeedRepeater(searcher, request.seeds, request.seed)
    return tune.Tuner(
        _trainable(request),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(request),
                                    num_samples=request.trials * request.seeds,
                                    max_concurrent_trials=request.concurrency,
                                    # Every trial asks for the same resources: a finished trial's
                                    # worker (torch imported, dataset cached) runs the next one.
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=request.name,
            storage_path=request.storage_path,
            callbacks=[*callbacks, JsonLoggerCallback(), StopForwarder()],
            failure_config=tune.FailureConfig(max_failures=request.max_failures),
            # Tune snapshots the experiment after every num_to_keep checkpoints of a trial: with 1,
            # a driver that dies loses at most the training since a trial's last checkpoint
            # (--checkpoint-every; see sweep.resume).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=0,
        ),
    )


def _restored_tuner(request: SweepRequest):
    """Tune restores the trials, the searcher and the callbacks (pickled when the sweep started;
    they recover their state from MLflow and Parquet in `setup`). Finished trials stay finished;
    unfinished and errored ones continue from their last checkpoints."""
    return tune.Tuner.restore(experiment_path(request.storage_path, request.name), _trainable(request),
                              resume_unfinished=True, resume_errored=True)


def _scheduler(request: SweepRequest):
    """ASHA stops trials whose per-epoch validation PGD accuracy trails the others' at the same
    epoch (rungs at grace, 3 x grace, ...); FIFO (None) runs every trial to the end."""
    if request.scheduler == "fifo":
        return None
    epochs = request.base["epochs"]
    return ASHAScheduler(time_attr="epoch", metric=RUNG_METRIC, mode="max", max_t=epochs,
                         grace_period=max(1, epochs // 4), reduction_factor=3)


def _reconcile(mlflow: BufferedMlflow, experiment_id: str, parent_id: str, sweep_dir: Path) -> None:
    try:
        notes = reconcile(mlflow, experiment_id, parent_id, sweep_dir)
    except Exception as error:  # noqa: BLE001 - only an unreachable server is tolerated
        if not is_transient(error):
            raise
        notes = [f"MLflow unreachable, records not reconciled ({str(error).splitlines()[0][:200]})"]
    for note in notes:
        click.echo(f"[orch] reconcile: {note}", err=True)


def _params(values: dict[str, Any]):
    return [Param(k, v if isinstance(v, str) else str(v)) for k, v in sorted(values.items())]


def _close_parent(client: BufferedMlflow, parent_id: str, sweep_dir: Path, status: str) -> None:
    """The parent run carries the sweep's Parquet files, its summary plots and its best trial.
    `status`: FINISHED, FAILED or INTERRUPTED (MLflow's KILLED: --resume continues it), also as
    the tag orch.status."""
    for name in (parquet.CURVES_FILE, parquet.TRIALS_FILE):
        if (sweep_dir / name).exists():
            client.log_artifact(parent_id, str(sweep_dir / name))
    trials_path = sweep_dir / parquet.TRIALS_FILE
    if trials_path.exists() and (sweep_dir / parquet.CURVES_FILE).exists():
        _log_summary_figures(client, parent_id, sweep_dir)
    best = best_trial_record(parquet.read_rows(trials_path), STRONG_METRIC) if trials_path.exists() else None
    if best is not None:
        client.log_batch(parent_id, metrics=[Metric(k, float(v), int(time.time() * 1000), 0)
                                             for k, v in best["metrics"].items()],
                         tags=[RunTag(k, v) for k, v in best["tags"].items()])
    client.set_tag(parent_id, "orch.status", status)
    client.set_terminated(parent_id, "KILLED" if status == "INTERRUPTED" else status)


def _log_summary_figures(client: BufferedMlflow, parent_id: str, sweep_dir: Path) -> None:
    """`orch report`'s first two figures for this sweep alone, under `summary/`."""
    with tempfile.TemporaryDirectory() as folder:
        if summary_figures(sweep_dir, Path(folder)):
            client.log_artifacts(parent_id, folder, artifact_path="summary")
