"""`orch evaluate`: attack a finished trial again (another profile, more points) without
retraining, from its checkpoint folder or from its MLflow run (its logged model), and log the
results to that run under eval/<profile>/."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow.artifacts
from mlflow.entities import LoggedModel, Metric, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.records.results import from_origin
from orchestrator.tracking.logger import CHECKPOINT_ARTIFACT, CHECKPOINT_TAG, at_target, curve_metrics
from orchestrator.tracking.store import TrackingUnreachable, check_tracking_uri, default_tracking_uri
from trainables.checkpoint import CheckpointRefused, load_state_file, restore
from trainables.evaluate import Evaluation, evaluate_trial
from trainables.trial import resolve_protocol, say_progress, surrogate_config, trained_surrogate


RUN_ID = re.compile(r"[0-9a-f]{32}")


class TargetNotFound(ValueError):
    """`orch evaluate TARGET` names no checkpoint and no run; the message says why."""


@dataclass(frozen=True)
class EvaluateTarget:
    """What `orch evaluate TARGET` reads: a checkpoint path, or a run id in a tracking store."""

    path: Path | None = None
    run_id: str | None = None


def evaluate_target(target: str, tracking_uri: str) -> EvaluateTarget:
    """A path that exists is a checkpoint; a string that looks like a path is a missing one;
    anything else is a run id, looked up only in a store that already exists."""
    if Path(target).exists():
        return EvaluateTarget(path=Path(target))
    if "/" in target or os.sep in target:
        raise TargetNotFound(f"no checkpoint at {target} (read as a path, since it contains '/')")
    if not RUN_ID.fullmatch(target):
        raise TargetNotFound(f"{target} is neither an existing checkpoint path nor an MLflow run id "
                                 f"(32 hex digits)")
    missing = _missing_store(tracking_uri)
    if missing:
        raise TargetNotFound(f"read {target} as an MLflow run id, but {missing}")
    return EvaluateTarget(run_id=target)


def _missing_store(tracking_uri: str) -> str | None:
    """Why a local tracking store does not exist yet (MLflow would create it on first use)."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return None if db.is_file() else f"there is no tracking store at {tracking_uri} ({db} does not exist)"
    if parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme else tracking_uri)
        return None if folder.is_dir() else f"there is no tracking store at {tracking_uri}"
    return None  # a server answers for itself


class LoadFailed(ValueError):
    """TARGET could not be loaded; the message is one line naming it and why."""


def load(target: str, tracking_uri: str | None) -> tuple[dict[str, Any], str | None]:
    """(trial state, run id or None) of `orch evaluate TARGET`; LoadFailed with one line."""
    tracking_uri = tracking_uri or default_tracking_uri()
    try:
        where = evaluate_target(target, tracking_uri)
        if where.run_id is not None:
            check_tracking_uri(tracking_uri)
        return load_target(where, tracking_uri)
    except MlflowException as error:
        raise LoadFailed(f"cannot load {target!r}: read as an MLflow run id in {tracking_uri}: "
                         f"{str(error).splitlines()[0]}") from None
    except (TrackingUnreachable, TargetNotFound, CheckpointRefused) as error:
        raise LoadFailed(f"cannot load {target!r}: {str(error).splitlines()[0]}") from None


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


def reevaluate(state: dict[str, Any], profile: str, examples: int,
               surrogate_state: dict[str, Any] | None = None) -> tuple[Evaluation, float]:
    """The trial's method re-attacked under `profile` on `examples` test points. The transfer
    attack (standard and full profiles) is crafted on `surrogate_state`'s model when given (e.g.
    another seed of the same configuration), else on the default PGD-trained surrogate a sweep
    uses (trainables.trial.surrogate_config)."""
    config, method, data = restore(state)
    protocol = resolve_protocol(config, data.family)
    eval_cfg = dataclasses.replace(config.eval, eval_profile=profile, eval_examples=examples)
    surrogate = None
    if profile != "quick":
        surrogate = (restore(surrogate_state)[1].eval() if surrogate_state is not None
                     else trained_surrogate(surrogate_config(config), config.eval.eval_surrogate_cache))
    evaluation = evaluate_trial(method, data.test, protocol, eval_cfg, data.family, surrogate, say=say_progress)
    return evaluation, protocol.target_eps


def log_to_run(tracking_uri: str, run_id: str, profile: str, evaluation: Evaluation) -> None:
    """Metrics under eval/<profile>/... named as in the sweep (the curve as
    eval/<profile>/curve/<attack>, steps = ε; each attack at the target ε as
    eval/<profile>/test_acc_at_target/<attack>), sanity tags updated, the curve as an artifact."""
    client = MlflowClient(tracking_uri)
    prefix = f"eval/{profile}"
    metrics = {f"{prefix}/robust_acc": evaluation.robust_acc, f"{prefix}/clean_acc": evaluation.clean_acc}
    if evaluation.autoattack_acc is not None:
        metrics[f"{prefix}/autoattack_acc"] = evaluation.autoattack_acc
    now = int(time.time() * 1000)
    curve = from_origin([p.as_dict() for p in evaluation.curve])
    tags = {f"sanity.{k}": str(v).lower() for k, v in evaluation.sanity.items()}
    target = client.get_run(run_id).data.tags.get("target_eps")  # runs of older sweeps have none
    if target:
        metrics.update({f"{prefix}/{k}": v for k, v in at_target(curve, float(target)).items()})
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
                     + curve_metrics(curve, now, prefix=f"{prefix}/"),
                     tags=[RunTag(k, v) for k, v in {**tags, "eval_profile": profile}.items()])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "curve.json"
        path.write_text(json.dumps(curve, indent=1))
        client.log_artifact(run_id, str(path), artifact_path=prefix)


def evaluation_text(evaluation: Evaluation, target_eps: float) -> str:
    """The curve as a table, the headline numbers and the sanity checks, as `orch evaluate` prints."""
    lines = [f"{'attack':<12}{'path':<9}{'norm':<6}{'eps':>8}{'accuracy':>10}"]
    lines += [f"{p.attack:<12}{p.path:<9}{p.norm:<6}{p.eps:>8.4f}{p.accuracy:>10.3f}" for p in evaluation.curve]
    lines.append(f"clean {evaluation.clean_acc:.3f}, robust (worst case at ε={target_eps:.4g}) "
                 f"{evaluation.robust_acc:.3f}" + (f", AutoAttack {evaluation.autoattack_acc:.3f}"
                                                   if evaluation.autoattack_acc is not None else ""))
    lines.append("sanity: " + ", ".join(f"{k}={v}" for k, v in evaluation.sanity.items()))
    lines += [f"[orch] WARNING: sanity check {check} failed: robust accuracy is untrusted"
              for check, value in evaluation.sanity.items() if value is False and check != "trusted"]
    return "\n".join(lines)
