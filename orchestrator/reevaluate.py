"""`orch evaluate`: attack a finished trial again (another profile, more points) without
retraining, from its checkpoint folder or from its MLflow run."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow.artifacts
from mlflow.entities import LoggedModel, Metric, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.tracking import MlflowClient

from orchestrator.callbacks import CHECKPOINT_ARTIFACT, CHECKPOINT_TAG, curve_metrics, from_origin
from orchestrator.preconditions import EvaluateTarget
from trainables.checkpoint import CheckpointRefused, load_state_file, restore
from trainables.evaluate import Evaluation, evaluate_trial
from trainables.trial import resolve_protocol


def load_target(target: EvaluateTarget, tracking_uri: str) -> tuple[dict[str, Any], str | None]:
    """(trial state, MLflow run id or None): the checkpoint at a path, or a run's checkpoint
    artifact (downloaded into a temporary folder)."""
    if target.path is not None:
        return load_state_file(target.path), None
    client = MlflowClient(tracking_uri)
    run = client.get_run(target.run_id)  # raises a clear MlflowException for an unknown id
    model = checkpoint_model(client, run.info.experiment_id, target.run_id)
    # MLflow's download progress bar would be more lines on stderr beside a one-line error.
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
    with tempfile.TemporaryDirectory() as folder:
        if model is None:  # logged before checkpoints were logged models, or while the server was away
            local = client.download_artifacts(target.run_id, CHECKPOINT_ARTIFACT, folder)
            source = f"runs:/{target.run_id}/{CHECKPOINT_ARTIFACT}"
        else:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, dst_path=folder,
                                                        tracking_uri=tracking_uri)
            source = f"models:/{model.model_id}"
        try:
            return load_state_file(local), target.run_id
        except CheckpointRefused as error:  # name the artifact, not the temporary folder
            raise CheckpointRefused(str(error).replace(str(Path(local)), source)) from None


def checkpoint_model(client: MlflowClient, experiment_id: str, run_id: str) -> LoggedModel | None:
    """The newest checkpoint logged model of the run, if any."""
    models = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}' AND tags.`{CHECKPOINT_TAG}` = 'true'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}], max_results=1)
    return models[0] if models else None


def reevaluate(state: dict[str, Any], profile: str, examples: int) -> tuple[Evaluation, float]:
    """The trial's method re-attacked under `profile` on `examples` test points."""
    config, method, data = restore(state)
    protocol = resolve_protocol(config, data.family)
    eval_cfg = dataclasses.replace(config.eval, eval_profile=profile, eval_examples=examples)
    return evaluate_trial(method, data.test, protocol, eval_cfg, data.family), protocol.target_eps


def log_to_run(tracking_uri: str, run_id: str, profile: str, evaluation: Evaluation) -> None:
    """Metrics under eval/<profile>/... (the curve as eval/<profile>/robust_acc/<attack>, steps
    = ε as in the sweep), sanity tags updated, the curve as an artifact."""
    client = MlflowClient(tracking_uri)
    prefix = f"eval/{profile}"
    metrics = {f"{prefix}/robust_acc": evaluation.robust_acc, f"{prefix}/clean_acc": evaluation.clean_acc}
    if evaluation.autoattack_acc is not None:
        metrics[f"{prefix}/autoattack_acc"] = evaluation.autoattack_acc
    now = int(time.time() * 1000)
    curve = from_origin([p.as_dict() for p in evaluation.curve])
    tags = {f"sanity.{k}": str(v).lower() for k, v in evaluation.sanity.items()}
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
                     + curve_metrics(curve, now, prefix=f"{prefix}/"),
                     tags=[RunTag(k, v) for k, v in {**tags, "eval_profile": profile}.items()])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "curve.json"
        path.write_text(json.dumps(curve, indent=1))
        client.log_artifact(run_id, str(path), artifact_path=prefix)
