"""The one place where `trainables.run_trial` meets Ray Tune."""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from typing import Any

import ray
import torch
from ray import tune

from trainables import TrialConfig, run_trial
from trainables.checkpoint import STATE_FILE, load_state_file


class TuneReporter:
    """Per epoch: the metrics, and a checkpoint directory holding the trial state when the last
    one is `checkpoint_every_s` old or this is the last epoch. (A checkpoint costs the trial a
    save and Tune an experiment snapshot: ~35 ms, 10% of a short CPU epoch.) Lists and dicts
    (the curve, sanity flags) travel as JSON strings under `<key>_json` so Tune's loggers and
    progress table see only scalars. Every report also says where the trial runs (the Ray node
    and the GPUs Ray gave it), which the driver records in MLflow."""

    def __init__(self, epochs: int, checkpoint_every_s: float) -> None:
        self.placement = {
            "node_id": ray.get_runtime_context().get_node_id(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        }
        self.epochs = epochs
        self.checkpoint_every_s = checkpoint_every_s
        self.last_checkpoint = time.monotonic()

    def report(self, metrics: dict[str, Any], state: dict[str, Any]) -> None:
        scalars: dict[str, Any] = dict(self.placement)
        for key, value in metrics.items():
            if isinstance(value, (list, dict)):
                scalars[f"{key}_json"] = json.dumps(value)
            else:
                scalars[key] = value
        due = time.monotonic() - self.last_checkpoint >= self.checkpoint_every_s
        if not due and state["epoch"] < self.epochs:
            tune.report(scalars)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, STATE_FILE))
            tune.report(scalars, checkpoint=tune.Checkpoint.from_directory(folder))
        self.last_checkpoint = time.monotonic()


def load_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as folder:
        return load_state_file(folder)


def trainable(config: dict[str, Any], base: dict[str, Any], checkpoint_every_s: float) -> None:
    """Tune's function trainable: `config` holds the searched (and --set) hyperparameters,
    `base` the rest of the flat trial config."""
    trial_config = TrialConfig.from_flat({**base, **config})
    _warn_if_gpu_without_cuda()
    checkpoint = tune.get_checkpoint()
    resume = load_state(checkpoint) if checkpoint else None
    if resume is not None and resume["epoch"] >= trial_config.train.epochs:
        # Its last epoch and curve were reported already: Tune restores such a trial when the
        # driver died between that report and its next snapshot. Nothing is left to compute.
        return
    run_trial(trial_config, TuneReporter(trial_config.train.epochs, checkpoint_every_s), resume=resume)


def _warn_if_gpu_without_cuda() -> None:

    if ray.get_gpu_ids() and not torch.cuda.is_available():
        warnings.warn(
            f"this trial was given GPU(s) {ray.get_gpu_ids()} but torch sees no CUDA device: "
            "running on CPU", stacklevel=2,
        )
