"""Build and run one sweep: Ray Tune schedules trials, Optuna proposes them, callbacks record."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click
from mlflow.entities import Metric, Param, RunTag

from orchestrator import parquet, store
from orchestrator.callbacks import MlflowLogger, ParquetRecorder, SweepInfo
from orchestrator.cluster import concurrency
from orchestrator.interrupt import StopForwarder, StopWatch, SweepInterrupted, end_interrupted_runs
from orchestrator.interrupt import received as stop_signal
from orchestrator.resilient_mlflow import BufferedMlflow, bound_http_retries, is_transient, report_unlogged
from orchestrator.resume import SavedSweep, reconcile, save_sweep, study_uri
from orchestrator.search import first_points, search_space
from orchestrator.seeds import SeedRepeater
from orchestrator.storage import ParquetMirror, default_storage, experiment_path
from orchestrator.tracking import (
    EXPERIMENT_KIND_TAG, SEARCH_SPACE_FILE, TRAINING_KIND, best_trial_record, parent_params, search_space_record)
from trainables.evaluate import UPPER_BOUND_PROFILES
from trainables.selection import RUNG_METRIC, SEARCH_METRIC, STRONG_METRIC

# Validation robust accuracy at the target ε that Optuna maximises: at a trial's last epoch the
# per-example worst case of PGD-CE and APGD-DLR with restarts (trainables.selection), so the search
# does not reward gradient masking. ASHA compares trials at the same epoch on RUNG_METRIC, PGD-CE
# with one restart and val_steps steps: cheap, and no more than a first cut.
OBJECTIVE = SEARCH_METRIC
# --objective: the metrics Optuna maximises. Robust accuracy comes last in both, so a report
# reads it as a study's last objective value.
OBJECTIVES = {"robust": [OBJECTIVE], "clean+robust": ["val_clean_acc", OBJECTIVE]}
SCHEDULERS = ("fifo", "asha")
FEW_EPOCHS = 3  # longer sweeps stop weak trials early (ASHA) unless --scheduler fifo


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
    storage: str = ""  # Tune's storage_path; "" = default_storage(sweep_dir)
    address: str | None = None  # a running Ray cluster; None = a local Ray started here
    max_failures: int = 0  # retries of a trial that dies, each from its last checkpoint
    checkpoint_every_s: float = 10.0  # a trial saves its state at most this often (0: every epoch)
    scheduler: str = "fifo"
    resume: SavedSweep | None = None  # set: continue this sweep (its driver died)
    settings: dict[str, Any] = field(default_factory=dict)  # the command's options, for --resume
    where: str = "this machine"  # for messages: this machine or the cluster at ADDRESS
    objective: str = "robust"  # a key of OBJECTIVES
    seeds: int = 1  # seed replicates per configuration (orchestrator.seeds)

    @property
    def sweep_dir(self) -> Path:
        return self.results_dir / self.name

    @property
    def storage_path(self) -> str:
        return self.storage or default_storage(self.sweep_dir)

    @property
    def eps_scale(self) -> float:
        """The dataset's target ε over its family's: scales the searched training ε."""
        from trainables.data import eps_scale

        return eps_scale(self.base["dataset"], self.family)

    @property
    def concurrency(self) -> int | None:
        return concurrency(self.gpus, self.gpus_per_trial)

    @property
    def info(self) -> SweepInfo:
        return SweepInfo(self.name, self.method, self.base["dataset"], self.base["model"],
                         self.seed, self.base["epochs"], self.trials * self.seeds, self.objective,
                         self.fixed.get("eval_profile", self.base["eval_profile"]))


def experiment_name(dataset: str) -> str:
    """One MLflow experiment per dataset, so every method's runs on it compare side by side."""
    return f"orch-{dataset}"


def default_scheduler(epochs: int) -> str:
    return "asha" if epochs > FEW_EPOCHS else "fifo"


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
    import ray

    from orchestrator.cluster import connect, start_local

    if request.address is not None and not ray.is_initialized():
        connect(request.address)
    elif request.address is None:
        start_local(request.gpus)


def _open_records(request: SweepRequest) -> tuple[BufferedMlflow, str, str]:
    store.create_store(request.tracking_uri)  # once, under a lock: sweeps started together all run
    mlflow = BufferedMlflow(request.tracking_uri)
    return (mlflow, *_open_parent(mlflow, request))


def _open_parent(mlflow: BufferedMlflow, request: SweepRequest) -> tuple[str, str]:
    """(experiment id, parent run id): created for a new sweep (the server was checked at the
    start, so failing here is loud), reopened for a resumed one."""
    if request.resume:
        mlflow.update_run(request.resume.parent_run_id, status="RUNNING")
        return request.resume.experiment_id, request.resume.parent_run_id
    request.sweep_dir.mkdir(parents=True)
    client = mlflow.client
    experiment_id = _experiment_id(client, request.tracking_uri, experiment_name(request.base["dataset"]))
    parent = client.create_run(experiment_id, run_name=request.name, tags={
        "sweep": request.name, "method": request.method, "dataset": request.base["dataset"],
        "model": request.base["model"], "objective": request.objective,
        "eval_profile": request.info.eval_profile,
        "orch.upper_bound": str(request.info.eval_profile in UPPER_BOUND_PROFILES).lower(),
        "seeds": str(request.seeds), "orch.role": "sweep"})
    parent_id = parent.info.run_id
    _log_search_space(client, parent_id, request)
    save_sweep(request.sweep_dir, SavedSweep(request.settings, experiment_id, parent_id))
    return experiment_id, parent_id


def _log_search_space(client, parent_id: str, request: SweepRequest) -> None:
    """The parent run records what the sweep searched, not the defaults the search replaces."""
    first = first_points(request.method, request.family, request.fixed, request.eps_scale)
    record = search_space_record(request.method, request.family, request.fixed, first, request.eps_scale)
    client.log_batch(parent_id, params=_params(parent_params(record, request.base, request.trials)))
    client.log_dict(parent_id, record, SEARCH_SPACE_FILE)


def _trainable(request: SweepRequest):
    from ray import tune

    from orchestrator.tune_adapter import trainable

    resources = {"cpu": request.cpus_per_trial, "gpu": request.gpus_per_trial if request.gpus else 0}
    return tune.with_resources(
        tune.with_parameters(trainable, base=request.base, checkpoint_every_s=request.checkpoint_every_s),
        resources)


def _new_tuner(request: SweepRequest, experiment_id: str, parent_id: str, out: TextIO | None):
    import optuna
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from orchestrator.selection import PruningOptunaSearch

    mlflow_logger = MlflowLogger(request.tracking_uri, experiment_id, parent_id, request.info, request.base)
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
            # (--checkpoint-every; see orchestrator.resume).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=0,
        ),
    )


def _restored_tuner(request: SweepRequest):
    """Tune restores the trials, the searcher and the callbacks (pickled when the sweep started;
    they recover their state from MLflow and Parquet in `setup`). Finished trials stay finished;
    unfinished and errored ones continue from their last checkpoints."""
    from ray import tune

    return tune.Tuner.restore(experiment_path(request.storage_path, request.name), _trainable(request),
                              resume_unfinished=True, resume_errored=True)


def _scheduler(request: SweepRequest):
    """ASHA stops trials whose per-epoch validation PGD accuracy trails the others' at the same
    epoch (rungs at grace, 3 x grace, ...); FIFO (None) runs every trial to the end."""
    from ray.tune.schedulers import ASHAScheduler

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


def _experiment_id(client, tracking_uri: str, name: str) -> str:
    """The experiment, created when new (artifacts beside a SQLite store; see store.py), and
    tagged (again, for experiments older orch versions made) as model training so that MLflow's
    UI opens its runs, not its GenAI view."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else store.create_experiment(client, tracking_uri, name)
    if experiment is None or experiment.tags.get(EXPERIMENT_KIND_TAG) != TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return experiment_id


def _params(values: dict[str, Any]):
    return [Param(k, str(v)) for k, v in sorted(values.items())]


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
    import tempfile

    from orchestrator.report import summary_figures

    with tempfile.TemporaryDirectory() as folder:
        if summary_figures(sweep_dir, Path(folder)):
            client.log_artifacts(parent_id, folder, artifact_path="summary")
