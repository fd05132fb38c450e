"""The MLflow logger: a driver-side Tune callback that keeps one child run per trial under the
sweep's parent run (params, per-epoch metrics, the curve, the checkpoint as a logged model, the
final status), writing through the resilient client.

What a user compares is a metric, and a metric's latest value (what MLflow's runs table shows)
is at the ε its name says (docs/mlflow.md):
- per epoch (step = epoch): the training losses, `val_clean_acc`, `val_robust_acc` (and, at the
  last epoch, `val_strong_robust_acc`);
- at the target ε (step = last epoch): `test_clean_acc`, `test_robust_acc` (worst case),
  `test_autoattack_acc`, and each attack alone as `test_acc_at_target/<attack>`;
- the curves (step = ε × 1000): `curve/<attack>` of each attack run over the whole grid, whose
  latest value is at the grid's largest ε.
Diagnostics (the black-box gaps, the bookkeeping of the search) go to the artifact
`diagnostics.json`; the full flat config to `config.json`."""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelOutput,
    Metric,
    Param,
    RunTag,
)
from ray import tune

from orchestrator.records.results import (
    SEED_KEY,
    SweepInfo,
    config_id,
    curve_of,
    epoch_metrics,
    error_line,
    final_weights_of,
    is_final,
    sanity_of,
)
from orchestrator.report import draw
from orchestrator.tracking.client import BufferedMlflow, is_transient, report_unlogged
from orchestrator.tracking.runs import RUNNING, child_runs, reopen
from trainables.config import TrialConfig
from trainables.protocol import resolve_protocol
from trainables.selection import SEARCH_METRIC
from trainables.sanity import MEASURED_PREFIX

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


CURVE_PREFIX = "curve/"  # curve/<attack>: accuracy against step = ε × EPS_STEP_SCALE
AT_TARGET_PREFIX = "test_acc_at_target/"  # test_acc_at_target/<attack>: one attack alone, at the target ε
# Result keys that are not compared across runs: the black-box gaps behind the sanity flag
# whitebox_le_blackbox (trainables.sanity.gap_metrics) and the values the other checks measured
# (trainables.sanity.measured_metrics), the target ε (a tag and a param), which
# weights were evaluated (tag orch.evaluated_epoch), and search_robust_acc, what Optuna was told (a
# copy of val_robust_acc per epoch and of val_strong_robust_acc at the last). A finished trial's
# go to DIAGNOSTICS_FILE.
DIAGNOSTIC_PREFIXES = ("blackbox_gap/", MEASURED_PREFIX)
DIAGNOSTIC_KEYS = {"target_eps", "evaluated_epoch", SEARCH_METRIC}
DIAGNOSTICS_FILE = "diagnostics.json"
CONFIG_FILE = "config.json"  # a trial's full flat config (TrialConfig.to_flat), as it ran
# The settings a child run shows as params beside the trial's searched (and --set) values; the
# rest of its config is in CONFIG_FILE.
SHOWN_SETTINGS = ("method", "dataset", "model", "epochs", "eval_profile", "seed")


def attack_name(point: dict[str, Any]) -> str:
    """The attack of a curve point; one crafted on the base model (path "base") is <attack>-base."""
    path = point.get("path", "predict")
    return point["attack"] if path == "predict" else f"{point['attack']}-{path}"


def curve_metric_name(point: dict[str, Any]) -> str:
    """One line per attack in MLflow's charts: curve/<attack>, whose steps are the ε values
    (EPS_STEP_SCALE). Its latest value, the one MLflow's table shows, is at the largest ε."""
    return CURVE_PREFIX + attack_name(point)


def curve_metrics(curve: list[dict[str, Any]], timestamp_ms: int, prefix: str = "") -> list[Metric]:
    """The curve as MLflow metric histories: selecting runs overlays their curves. Clean
    accuracy is test_clean_acc, and every line's step 0. Only attacks that ran up to the grid's
    largest ε are curves, so every curve/* column shows the same ε; an attack run at the target
    alone (AutoAttack) is test_acc_at_target/<attack> only."""
    attacked = [p for p in curve if p["attack"] != "clean"]
    largest = max((p["eps"] for p in attacked), default=0.0)
    full = {curve_metric_name(p) for p in attacked if math.isclose(p["eps"], largest)}
    return [Metric(prefix + name, float(p["accuracy"]), timestamp_ms, round(p["eps"] * EPS_STEP_SCALE))
            for p in attacked if (name := curve_metric_name(p)) in full]


def at_target(curve: list[dict[str, Any]], target_eps: float) -> dict[str, float]:
    """test_acc_at_target/<attack>: each attack alone at the target ε (the worst case over them
    is test_robust_acc, clean accuracy test_clean_acc)."""
    return {AT_TARGET_PREFIX + attack_name(p): float(p["accuracy"]) for p in curve
            if p["attack"] not in ("clean", "worst") and math.isclose(p["eps"], target_eps)}


def is_diagnostic(key: str) -> bool:
    return key in DIAGNOSTIC_KEYS or key.startswith(DIAGNOSTIC_PREFIXES)


def compared_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric result keys a user compares (see the module docstring)."""
    return {k: v for k, v in epoch_metrics(result).items() if not is_diagnostic(k) and math.isfinite(v)}


def diagnostics(result: dict[str, Any]) -> dict[str, Any]:
    """A finished trial's diagnostics, for DIAGNOSTICS_FILE."""
    numbers = {k: v for k, v in epoch_metrics(result).items() if is_diagnostic(k)}
    return {**numbers, "sanity": sanity_of(result), **final_weights_of(result)}


def shown_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def child_run_name(trial_id: str, config: dict[str, Any], searched: tuple[str, ...]) -> str:
    """The trial id first (MLflow's table cuts names at ~20 characters), then the values the
    search chose for it (and its seed, when a sweep repeats seeds): `3f2a1_00004 lambda=0.52
    embed_dim=8 ...`."""
    keys = [k for k in searched if k in config] + ([SEED_KEY] if SEED_KEY in config else [])
    return " ".join([trial_id, *(f"{k}={shown_value(config[k])}" for k in keys)])


def model_name(trial_id: str, method: str) -> str:
    """A trial's logged model: `<trial id>-<method>`, unique in the experiment's Models list."""
    return f"{trial_id}-{method}"


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


def stop_tags(stopped: bool, epoch: int) -> dict[str, str]:
    """orch.status FINISHED or STOPPED; a stopped trial says at which epoch the scheduler stopped it."""
    tags = {"orch.status": "STOPPED" if stopped else "FINISHED", "orch.stopped_early": str(stopped).lower()}
    return {**tags, "orch.stopped_at_epoch": str(epoch)} if stopped else tags


class MlflowLogger(tune.Callback):
    """Writes through BufferedMlflow: a tracking server that goes away delays the records, it
    does not stop the trials. Pickled by Tune with the sweep and restored on --resume."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 info: SweepInfo, base_params: dict[str, Any], family: str = "",
                 searched: tuple[str, ...] = ()):
        self.client = BufferedMlflow(tracking_uri)
        self.family = family  # the dataset's family: resolves a trial's ε protocol
        self.searched = searched  # the searched keys, named in each child run's name
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
        return self.recovered.get(trial.trial_id) in ("FINISHED", "FAILED") and is_final(trial.last_result)

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
                reopen(self.client, self.run_ids[trial.trial_id])
            return
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "sweep": self.info.sweep, "method": self.info.method, "dataset": self.info.dataset,
            "model": self.info.model, "trial_id": trial.trial_id, "objective": self.info.objective,
            "eval_profile": self.info.profile_of(trial.config),
            "orch.upper_bound": str(self.info.is_upper_bound(trial.config)).lower(),
            "config_id": config_id(trial.config), "seed": str(trial.config.get(SEED_KEY, self.info.seed)),
            **RUNNING,
        }
        flat = {**self.base_params, **trial.config}
        params = {**{k: flat[k] for k in SHOWN_SETTINGS if k in flat}, **trial.config,
                  **self._protocol_params(flat), "eval_profile": tags["eval_profile"]}
        tags["target_eps"] = str(params.get("target_eps", ""))
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=child_run_name(
            trial.trial_id, trial.config, getattr(self, "searched", ())))
        self.run_ids[trial.trial_id] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=[Param(k, shown_value(v)) for k, v in sorted(params.items())])
        self.client.log_dict(run.info.run_id, flat, CONFIG_FILE)

    def _protocol_params(self, flat: dict[str, Any]) -> dict[str, Any]:
        """The ε values the trial uses (its dataset's protocol where the config leaves them unset)."""
        family = getattr(self, "family", "")
        if not family:
            return {}
        protocol = resolve_protocol(TrialConfig.from_flat(flat), family)
        return {"target_eps": protocol.target_eps, "train_eps": protocol.train_eps,
                "eps_grid": ",".join(f"{e:.4g}" for e in protocol.eps_grid)}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.run_ids[trial.trial_id]
        now = int(time.time() * 1000)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        if step <= self.logged_epoch.get(trial.trial_id, 0):
            return
        metrics = [Metric(k, v, now, step) for k, v in compared_metrics(result).items()]
        if "curve_json" in result:
            curve = curve_of(result)
            metrics += curve_metrics(curve, now)
            metrics += [Metric(k, v, now, step) for k, v in at_target(curve, result["target_eps"]).items()]
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
            self.client.log_dict(run_id, diagnostics(result), DIAGNOSTICS_FILE)

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
        # Not final: the scheduler stopped the trial before its last epoch, a normal end (MLflow's
        # FINISHED; KILLED is for runs a user interrupted), told apart by orch.status=STOPPED and
        # orch.stopped_early. Its weights were never evaluated: no logged model (its last
        # checkpoint stays in Tune's storage).
        stopped = not is_final(trial.last_result)
        if trial.checkpoint is not None and not stopped:
            # From --storage (downloaded if remote), never from the worker's local disk.
            with trial.checkpoint.as_directory() as folder:
                self._log_checkpoint(run_id, folder, trial)
        epoch = int((trial.last_result or {}).get("epoch", 0))
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in stop_tags(stopped, epoch).items()] + [
            RunTag("orch.failures", str(trial.run_metadata.num_failures))])
        self.client.set_terminated(run_id, "FINISHED")

    def _log_checkpoint(self, run_id: str, folder: str, trial) -> None:
        """The final checkpoint as an MLflow logged model of the run (its Models column); while
        the server is away (or the run exists only in the buffer) as the buffered artifact
        `checkpoint/`, which `orch evaluate` reads too."""
        real_run_id = self.client.resolved(run_id)
        if real_run_id is not None:
            try:
                log_checkpoint_model(self.client.client, self.experiment_id, real_run_id, folder,
                                     model_name(trial.trial_id, self.info.method),
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
