"""The Parquet recorder: a driver-side Tune callback that appends a trial's curve rows and its
trials row when it ends (atomically, idempotently: see records.parquet), and prints progress."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, TextIO

import click
from ray import tune

from orchestrator.records import examples, parquet
from orchestrator.records.results import (
    SEED_KEY, SweepInfo, collapse_warning, config_id, curve_of, epoch_metrics, error_line, failed_checks,
    final_weights_of, is_final, measured_columns, sanity_columns)
from trainables.selection import RUNG_METRIC, STRONG_METRIC


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
        self.finished: set[str] = set()  # recorded FINISHED by an earlier driver of this sweep

    def setup(self, **info):
        """A resumed sweep counts the trials that ended before the driver died, but not the
        failed ones: --resume runs them again, and they are counted when they end again."""
        trials_path = self.sweep_dir / parquet.TRIALS_FILE
        rows = parquet.read_rows(trials_path) if trials_path.exists() else []
        self.ended = sum(r["status"] != "FAILED" for r in rows)
        self.finished = {r["trial_id"] for r in rows if r["status"] == "FINISHED"}

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
            "model": self.info.model, "seed": trial.config.get(SEED_KEY, self.info.seed),
            "config_id": config_id(trial.config),
            **parquet.hp_columns({k: v for k, v in trial.config.items() if k != SEED_KEY}),
        }

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        identity = self._identity(trial)
        curve = curve_of(result)
        if is_final(result) and trial.trial_id in self.finished:
            return  # recorded before the driver died; restoring it changed nothing
        # Not final: the scheduler stopped it before its last epoch (a search that reads no test
        # split ends final without a curve).
        status = "FINISHED" if is_final(result) else "STOPPED"
        if curve:
            parquet.upsert(self.sweep_dir / parquet.CURVES_FILE, [{**identity, **point} for point in curve], "curves")
        per_example = examples.examples_of(result)
        if per_example is not None:
            examples.upsert(self.sweep_dir / examples.EXAMPLES_FILE, examples.table_of(identity, per_example))
        self._write_trial(trial, identity, status, result, error=None)
        self.ended += 1
        if status == "STOPPED":  # no test evaluation: the scheduler ended it before the last epoch
            outcome = (f"stopped early by the scheduler after epoch {result.get('epoch', '?')}: "
                       f"val robust {result.get('val_robust_acc', float('nan')):.3f}")
        elif "test_clean_acc" in result:
            outcome = (f"finished: test clean {result['test_clean_acc']:.3f}  "
                       f"test robust {result['test_robust_acc']:.3f}")
        else:
            outcome = f"finished: val robust (strong attack) {result[STRONG_METRIC]:.3f}, test split not read"
        self._say(f"[orch] trial {trial.trial_id} {outcome} ({self.ended}/{self.info.trials})")

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
            "val_robust_acc": result.get(RUNG_METRIC),
            STRONG_METRIC: result.get(STRONG_METRIC),
            "val_clean_acc": result.get("val_clean_acc"),
            "target_eps": result.get("target_eps"),
            "data_digest": result.get("data_digest"),
            "epochs_completed": result.get("epoch", 0),
            "duration_s": _duration(result, self.started.get(trial.trial_id)),
            "checkpoint_uri": trial.checkpoint.path if trial.checkpoint is not None else None,
            "error": error,
            "autoattack_acc": result.get("test_autoattack_acc"),
            "train_cpu_s": result.get("train_cpu_s"),  # CPU-seconds of the trial's process
            "eval_cpu_s": result.get("eval_cpu_s"),
            "eval_profile": self.info.profile_of(trial.config),
            "robust_is_upper_bound": self.info.is_upper_bound(trial.config),
            **sanity_columns(result),
            **measured_columns(result),
            **final_weights_of(result),
        }
        parquet.upsert(self.sweep_dir / parquet.TRIALS_FILE, [row], "trials")
        for check in failed_checks(result):
            self._say(f"[orch] WARNING trial {trial.trial_id}: sanity check {check} failed; "
                      "its robust accuracy is marked untrusted (sanity_trusted=false)")
        if result.get("collapsed"):
            self._say(collapse_warning(trial.trial_id, result))


def _duration(result: dict[str, Any], started: float | None) -> float:
    """The trial's wall-seconds: as the trial counted them over all its runs up to its last report
    (a resumed trial's earlier runs included), else since this driver saw it start."""
    if result.get("trial_wall_s") is not None:
        return float(result["trial_wall_s"])
    return time.time() - started if started is not None else 0.0


def _short(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))
