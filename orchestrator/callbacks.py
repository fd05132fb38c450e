"""Driver-side Tune callbacks: MLflow (one child run per trial under the sweep's parent run),
Parquet (the driver appends each trial's rows when it ends) and progress lines."""
from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import click
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from orchestrator import parquet

# Keys Tune adds to every result; they are bookkeeping, not our metrics.
TUNE_KEYS = {
    "timestamp", "time_this_iter_s", "time_total_s", "training_iteration", "pid", "hostname",
    "node_ip", "time_since_restore", "iterations_since_restore", "done", "trial_id", "date",
    "config", "checkpoint_dir_name", "should_checkpoint", "experiment_tag", "epoch",
}


@dataclass(frozen=True)
class SweepInfo:
    """What identifies a sweep's rows and runs."""

    sweep: str
    method: str
    dataset: str
    model: str
    seed: int
    epochs: int
    trials: int


def epoch_metrics(result: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value) for key, value in result.items()
        if key not in TUNE_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def curve_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(result["curve_json"]) if "curve_json" in result else []


def curve_metric_name(point: dict[str, Any]) -> str:
    """One scheme for curve points, sortable in the MLflow UI: curve/<attack>/eps_<0.0000>."""
    return f"curve/{point['attack']}/eps_{point['eps']:.4f}"


def error_line(trial: tune.experiment.Trial) -> str:
    """The last line of the trial's traceback (`ExceptionType: message`)."""
    # When on_trial_error runs, the error file may exist only in the driver's local trial folder.
    local = Path(trial.error_file) if trial.error_file else None
    text = local.read_text() if local is not None and local.is_file() else trial.get_error() or ""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "trial failed (no error text)"


class MlflowLogger(tune.Callback):
    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 info: SweepInfo, base_params: dict[str, Any]):
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.info = info
        self.base_params = base_params
        self.run_ids: dict[str, str] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.run_ids:
            return
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "sweep": self.info.sweep, "method": self.info.method, "dataset": self.info.dataset,
            "model": self.info.model, "trial_id": trial.trial_id,
        }
        run = self.client.create_run(self.experiment_id, run_name=f"{self.info.sweep}/{trial.trial_id}",
                                     tags=tags)
        self.run_ids[trial.trial_id] = run.info.run_id
        params = {**self.base_params, **trial.config}
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.run_ids[trial.trial_id]
        now = int(time.time() * 1000)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        metrics = [Metric(k, v, now, step) for k, v in epoch_metrics(result).items() if math.isfinite(v)]
        for point in curve_of(result):
            metrics.append(Metric(curve_metric_name(point), float(point["accuracy"]), now, 0))
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)
        if "curve_json" in result:
            self._log_curve_artifacts(run_id, curve_of(result))

    def _log_curve_artifacts(self, run_id: str, curve: list[dict[str, Any]]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            json_path = Path(folder) / "curve.json"
            json_path.write_text(json.dumps(curve, indent=1))
            csv_path = Path(folder) / "curve.csv"
            columns = list(curve[0]) if curve else []
            csv_path.write_text("\n".join([",".join(columns)] + [
                ",".join(str(p[c]) for c in columns) for p in curve]) + "\n")
            self.client.log_artifact(run_id, str(json_path))
            self.client.log_artifact(run_id, str(csv_path))

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self.run_ids[trial.trial_id]
        if trial.checkpoint is not None:
            self.client.log_artifacts(run_id, trial.checkpoint.path, artifact_path="checkpoint")
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        self.client.set_tag(run_id, "error", error_line(trial)[:5000])
        self.client.set_terminated(run_id, "FAILED")


class ParquetRecorder(tune.Callback):
    """Appends a trial's curve rows and its trials row when it ends, and prints progress."""

    def __init__(self, sweep_dir: Path, info: SweepInfo, run_id_of: Callable[[str], str | None],
                 out: TextIO | None = None):
        self.sweep_dir = sweep_dir
        self.info = info
        self.run_id_of = run_id_of
        self.out = out
        self.started: dict[str, float] = {}
        self.ended = 0

    def _say(self, text: str) -> None:
        click.echo(text, file=self.out)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.time())
        self._say(f"[orch] trial {trial.trial_id} started: {_short(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        m = epoch_metrics(result)
        self._say(f"[orch] trial {trial.trial_id} epoch {result.get('epoch', '?')}/{self.info.epochs}: "
                  f"loss {m.get('loss', float('nan')):.3f}  val clean {m.get('val_clean_acc', float('nan')):.3f}"
                  f"  val robust {m.get('val_robust_acc', float('nan')):.3f}")

    def _identity(self, trial) -> dict[str, Any]:
        return {
            "sweep": self.info.sweep, "method": self.info.method, "trial_id": trial.trial_id,
            "mlflow_run_id": self.run_id_of(trial.trial_id), "dataset": self.info.dataset,
            "model": self.info.model, "seed": self.info.seed, **parquet.hp_columns(trial.config),
        }

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        identity = self._identity(trial)
        curve = curve_of(result)
        status = "FINISHED" if curve else "STOPPED"  # no curve: stopped before its last epoch
        parquet.upsert(self.sweep_dir / parquet.CURVES_FILE,
                       [{**identity, **point} for point in curve], "curves")
        self._write_trial(trial, identity, status, result, error=None)
        self.ended += 1
        self._say(f"[orch] trial {trial.trial_id} {status.lower()} ({self.ended}/{self.info.trials}): "
                  f"test clean {result.get('test_clean_acc', float('nan')):.3f}  "
                  f"test robust {result.get('test_robust_acc', float('nan')):.3f}")

    def on_trial_error(self, iteration, trials, trial, **info):
        error = error_line(trial)
        self._write_trial(trial, self._identity(trial), "FAILED", trial.last_result or {}, error)
        self.ended += 1
        self._say(f"[orch] trial {trial.trial_id} FAILED ({self.ended}/{self.info.trials}): {error}")

    def _write_trial(self, trial, identity, status, result, error) -> None:
        row = {
            **identity,
            "status": status,
            "clean_acc": result.get("test_clean_acc"),
            "robust_acc": result.get("test_robust_acc"),
            "val_robust_acc": result.get("val_robust_acc"),
            "target_eps": result.get("target_eps"),
            "epochs_completed": result.get("epoch", 0),
            "duration_s": time.time() - self.started.get(trial.trial_id, time.time()),
            "checkpoint_uri": trial.checkpoint.path if trial.checkpoint is not None else None,
            "error": error,
        }
        parquet.upsert(self.sweep_dir / parquet.TRIALS_FILE, [row], "trials")


def _short(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))
