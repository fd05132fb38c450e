"""The MLflow logger: a driver-side Tune callback that keeps one child run per trial under the
sweep's parent run (params, per-epoch metrics, the curve, the checkpoint as a logged model, the
final status), writing through the resilient client."""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, Metric, Param, RunTag
from ray import tune

from orchestrator.records.results import (
    SEED_KEY, SweepInfo, config_id, curve_of, epoch_metrics, error_line, final_weights_of, sanity_of)
from orchestrator.report import draw
from orchestrator.tracking.client import BufferedMlflow, is_transient, report_unlogged
from orchestrator.tracking.runs import child_runs

# A trial's final checkpoint: a logged model tagged CHECKPOINT_TAG (sweeps before logged
# models, and writes buffered while the server was away, put it under the run's artifact
# CHECKPOINT_ARTIFACT).
CHECKPOINT_TAG = "orch.checkpoint"
CHECKPOINT_ARTIFACT = "checkpoint"
# Where a trial ran (tune_adapter reports node_id and cuda_visible_devices): MLflow tags, updated
# when a retried trial lands somewhere else.
PLACEMENT_TAGS = {"node_id": "ray.node_id", "node_ip": "ray.node_ip", "pid": "ray.pid",
                  "cuda_visible_devices": "cuda_visible_devices"}


# MLflow steps are integers: a curve point's step is round(ε × EPS_STEP_SCALE), so ε = 0.3 is
# step 300 and 8/255 is step 31 (the L2 radius of pgd-l2 uses the same scale).
EPS_STEP_SCALE = 1000


def curve_metric_name(point: dict[str, Any]) -> str:
    """One line per attack in MLflow's charts: robust_acc/<attack>, whose steps are the ε values
    (EPS_STEP_SCALE); an attack crafted on the base model (path "base") is
    robust_acc/<attack>-base."""
    path = point.get("path", "predict")
    attack = point["attack"] if path == "predict" else f"{point['attack']}-{path}"
    return f"robust_acc/{attack}"


def curve_metrics(curve: list[dict[str, Any]], timestamp_ms: int, prefix: str = "") -> list[Metric]:
    """The curve as MLflow metric histories: selecting runs overlays their curves. Clean
    accuracy is test_clean_acc, and every line's step 0."""
    return [Metric(prefix + curve_metric_name(p), float(p["accuracy"]), timestamp_ms,
                   round(p["eps"] * EPS_STEP_SCALE)) for p in curve if p["attack"] != "clean"]


def placement_tags(result: dict[str, Any]) -> dict[str, str]:
    return {tag: str(result[key]) for key, tag in PLACEMENT_TAGS.items() if key in result}


def dataset_input(record: dict[str, Any]) -> DatasetInput:
    """A trial's dataset (trainables.provenance) as an MLflow dataset input: name and content
    digest in the Dataset column, split sizes and shape in its profile."""
    profile = {key: record[key] for key in ("splits", "input_shape", "num_classes", "val_fraction", "split_seed")}
    dataset = Dataset(name=record["name"], digest=record["digest"], source_type="local",
                      source=json.dumps({"uri": record["source"]}), profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def log_checkpoint_model(client, experiment_id: str, run_id: str, folder: str, name: str, epoch: int) -> str:
    """A checkpoint folder as a READY logged model whose source is the run; returns its id."""
    model = client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                       tags={CHECKPOINT_TAG: "true"})
    client.log_model_artifacts(model.model_id, folder)
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=epoch)])
    return model.model_id


class MlflowLogger(tune.Callback):
    """Writes through BufferedMlflow: a tracking server that goes away delays the records, it
    does not stop the trials. Pickled by Tune with the sweep and restored on --resume."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 info: SweepInfo, base_params: dict[str, Any]):
        self.client = BufferedMlflow(tracking_uri)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.info = info
        self.base_params = base_params
        self.run_ids: dict[str, str] = {}
        self.placements: dict[str, dict[str, str]] = {}
        self.recovered: dict[str, str] = {}  # trial_id -> status of runs made by an earlier driver
        self.logged_epoch: dict[str, int] = {}  # the last epoch such a run has in MLflow

    def setup(self, **info):
        """A resumed sweep's trials already have runs: MLflow says which, so none is duplicated."""
        runs = child_runs(self.client, self.experiment_id, self.parent_run_id)
        self.run_ids.update({trial_id: run.info.run_id for trial_id, run in runs.items()})
        self.recovered = {trial_id: run.info.status for trial_id, run in runs.items()}

    def _already_final(self, trial) -> bool:
        """MLflow closed this run and Tune holds the trial's final result: a trial that finished
        just before the driver died, restored with nothing left to compute or log."""
        return (self.recovered.get(trial.trial_id) in ("FINISHED", "FAILED")
                and "curve_json" in (trial.last_result or {}))

    def _note_logged_epochs(self, trial_id: str) -> None:
        """Epochs after Tune's last snapshot were logged by the driver that died and are
        trained again from the snapshot's checkpoint: log each epoch once (this driver's own
        epochs are noted as it logs them)."""
        if trial_id not in self.recovered or trial_id in self.logged_epoch:
            return
        try:
            history = self.client.get_metric_history(self.run_ids[trial_id], "val_robust_acc")
        except Exception as error:  # noqa: BLE001 - an unreachable server only costs duplicates
            if not is_transient(error):
                raise
            history = []
        self.logged_epoch[trial_id] = max((m.step for m in history), default=0)

    def run_id_of(self, trial_id: str) -> str | None:
        """The trial's run id, or None while the run exists only in the write buffer."""
        return self.client.resolved(self.run_ids.get(trial_id))

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.run_ids:  # resumed, or retried after a failure
            if not self._already_final(trial):
                self._note_logged_epochs(trial.trial_id)
                self.client.update_run(self.run_ids[trial.trial_id], status="RUNNING")
            return
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "sweep": self.info.sweep, "method": self.info.method, "dataset": self.info.dataset,
            "model": self.info.model, "trial_id": trial.trial_id, "objective": self.info.objective,
            "eval_profile": self.info.profile_of(trial.config),
            "orch.upper_bound": str(self.info.is_upper_bound(trial.config)).lower(),
            "config_id": config_id(trial.config), "seed": str(trial.config.get(SEED_KEY, self.info.seed)),
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
        if step <= self.logged_epoch.get(trial.trial_id, 0):
            return
        metrics = [Metric(k, v, now, step) for k, v in epoch_metrics(result).items() if math.isfinite(v)]
        metrics += curve_metrics(curve_of(result), now)
        placement = placement_tags(result)
        tags = [RunTag(k, v) for k, v in placement.items()] if placement != self.placements.get(trial.trial_id) else []
        self.placements[trial.trial_id] = placement
        if metrics or tags:
            self.client.log_batch(run_id, metrics=metrics, tags=tags)
        # A trial retried after its worker died re-reports the epochs since its last checkpoint.
        self.logged_epoch[trial.trial_id] = step
        if "data_json" in result:
            self.client.log_inputs(run_id, datasets=[dataset_input(json.loads(result["data_json"]))])
        if "sanity_json" in result:
            sanity = {f"sanity.{k}": str(v).lower() for k, v in sanity_of(result).items()}
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in sanity.items()])
        if "curve_json" in result:
            self.client.log_batch(run_id, tags=[RunTag(f"orch.{k}", str(v).lower())
                                                for k, v in final_weights_of(result).items()])
            self._log_curve_artifacts(run_id, curve_of(result), f"{self.info.sweep}/{trial.trial_id}")

    def _log_curve_artifacts(self, run_id: str, curve: list[dict[str, Any]], title: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            json_path = Path(folder) / "curve.json"
            json_path.write_text(json.dumps(curve, indent=1))
            csv_path = Path(folder) / "curve.csv"
            columns = list(curve[0]) if curve else []
            csv_path.write_text("\n".join([",".join(columns)] + [
                ",".join(str(p[c]) for c in columns) for p in curve]) + "\n")
            png_path = Path(folder) / "curve.png"
            draw.save_png(draw.curve_figure(curve, title), png_path)
            self.client.log_artifact(run_id, str(json_path))
            self.client.log_artifact(run_id, str(csv_path))
            self.client.log_artifact(run_id, str(png_path))

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self._already_final(trial):
            return
        run_id = self.run_ids[trial.trial_id]
        if trial.checkpoint is not None:
            # From --storage (downloaded if remote), never from the worker's local disk.
            with trial.checkpoint.as_directory() as folder:
                self._log_checkpoint(run_id, folder, trial)
        # No curve: the scheduler stopped the trial before its last epoch. MLflow has no such
        # status; KILLED with orch.status=STOPPED keeps it apart from finished and failed runs.
        stopped = "curve_json" not in (trial.last_result or {})
        self.client.set_tag(run_id, "orch.failures", str(trial.run_metadata.num_failures))
        self.client.set_tag(run_id, "orch.status", "STOPPED" if stopped else "FINISHED")
        self.client.set_terminated(run_id, "KILLED" if stopped else "FINISHED")

    def _log_checkpoint(self, run_id: str, folder: str, trial) -> None:
        """The final checkpoint as an MLflow logged model of the run (its Models column); while
        the server is away (or the run exists only in the buffer) as the buffered artifact
        `checkpoint/`, which `orch evaluate` reads too."""
        real_run_id = self.client.resolved(run_id)
        if real_run_id is not None:
            try:
                log_checkpoint_model(self.client.client, self.experiment_id, real_run_id, folder,
                                     f"{self.info.method}-{self.info.model}",
                                     int((trial.last_result or {}).get("epoch", 0)))
                return
            except Exception as error:  # noqa: BLE001 - only an unreachable server is tolerated
                if not is_transient(error):
                    raise
        self.client.log_artifacts(run_id, folder, artifact_path=CHECKPOINT_ARTIFACT)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """The trial died and will continue from its last checkpoint (--max-failures)."""
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is not None:
            self.client.set_tag(run_id, "orch.failures", str(trial.run_metadata.num_failures))
            self.client.set_tag(run_id, "last_error", error_line(trial)[:5000])

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        self.client.set_tag(run_id, "error", error_line(trial)[:5000])
        self.client.set_tag(run_id, "orch.failures", str(trial.run_metadata.num_failures))
        self.client.set_tag(run_id, "orch.status", "FAILED")
        self.client.set_terminated(run_id, "FAILED")

    def on_experiment_end(self, trials, **info):
        """Last chance for writes buffered while the server was away; the rest is reported."""
        report_unlogged(self.client.close())
