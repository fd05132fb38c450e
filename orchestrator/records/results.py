"""What a trial's Tune results mean, read the same way by the MLflow logger and the Parquet
recorder: the sweep's identity, a configuration's id, the per-epoch metrics, the final curve, the
sanity flags and which weights were evaluated."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.evaluate import UPPER_BOUND_PROFILES
from trainables.sanity import MEASURE_OF, MEASURED_PREFIX
from trainables.selection import STRONG_METRIC

SEED_KEY = "seed"
# Keys Tune adds to every result; they are bookkeeping, not our metrics.
TUNE_KEYS = {
    "timestamp", "time_this_iter_s", "time_total_s", "training_iteration", "pid", "hostname",
    "node_ip", "time_since_restore", "iterations_since_restore", "done", "trial_id", "date",
    "config", "checkpoint_dir_name", "should_checkpoint", "experiment_tag", "epoch",
}


# The profile of a trial that never reads the test split (`--set evaluate_test=false`: a
# benchmark's search, selected on the strong validation attack): no test numbers at all.
NO_TEST_EVALUATION = "none"


@dataclass(frozen=True)
class SweepInfo:
    """What identifies a sweep's rows and runs."""

    sweep: str
    method: str
    dataset: str
    model: str
    seed: int
    epochs: int
    trials: int  # Tune trials: configurations x seeds
    objective: str = "robust"
    eval_profile: str = "standard"

    def profile_of(self, config: dict[str, Any]) -> str:
        """The trial's final evaluation profile (`--set eval_profile=` may fix it per sweep)."""
        return config.get("eval_profile", self.eval_profile)

    def is_upper_bound(self, config: dict[str, Any]) -> bool:
        """A profile without AutoAttack gives a robust accuracy that is only an upper bound."""
        return self.profile_of(config) in UPPER_BOUND_PROFILES


def config_id(config: dict[str, Any]) -> str:
    """A short stable id of a configuration, the same for all its seed replicates."""
    rest = {k: v for k, v in sorted(config.items()) if k != SEED_KEY}
    return hashlib.sha1(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:8]


def is_final(result: dict[str, Any] | None) -> bool:
    """The result of a trial's last epoch: it carries the strong validation value."""
    return bool(result) and STRONG_METRIC in result


def epoch_metrics(result: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value) for key, value in result.items()
        if key not in TUNE_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def curve_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    return from_origin(json.loads(result["curve_json"])) if "curve_json" in result else []


def from_origin(curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The curve with a point at ε = 0 for every attack (and the worst case): no perturbation is
    the clean input, so its accuracy is the clean accuracy. The trial does not attack at ε = 0;
    these points let every plotted curve start where the clean one does."""
    clean = next((p["accuracy"] for p in curve if p["attack"] == "clean"), None)
    if clean is None:
        return curve
    starts = {}  # the first point of each (attack, path): the origin copies its budget
    for point in curve:
        key = (point["attack"], point.get("path", "predict"))
        if point["attack"] != "clean" and key not in starts:
            starts[key] = point
    has_origin = {(p["attack"], p.get("path", "predict")) for p in curve if p["eps"] == 0}
    origins = [{**first, "eps": 0.0, "accuracy": clean} for key, first in starts.items() if key not in has_origin]
    return curve[:1] + origins + curve[1:]


def error_line(trial: Any) -> str:
    """The last line of the trial's traceback (`ExceptionType: message`)."""
    # When on_trial_error runs, the error file may exist only in the driver's local trial folder.
    local = Path(trial.error_file) if trial.error_file else None
    text = local.read_text() if local is not None and local.is_file() else trial.get_error() or ""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "trial failed (no error text)"


def sanity_of(result: dict[str, Any]) -> dict[str, bool | None]:
    return json.loads(result["sanity_json"]) if "sanity_json" in result else {}


def sanity_columns(result: dict[str, Any]) -> dict[str, bool | None]:
    """trials.parquet columns sanity_<check> (True/False, null when the check did not run)."""
    return {f"sanity_{name}": value for name, value in sanity_of(result).items()}


def measured_columns(result: dict[str, Any]) -> dict[str, float | None]:
    """trials.parquet columns measured_<name>: the values trainables.sanity.measured_metrics reported."""
    return {f"measured_{name}": result.get(MEASURED_PREFIX + name) for name in MEASURE_OF.values()}


def failed_checks(result: dict[str, Any]) -> list[str]:
    return [name for name, value in sanity_of(result).items() if value is False and name != "trusted"]


def final_weights_of(result: dict[str, Any]) -> dict[str, Any]:
    """Which weights a trial's test numbers belong to and whether its training collapsed
    (trainables.final_weights): trials.parquet columns, and MLflow tags `orch.<key>`."""
    return {key: result.get(key) for key in ("final_checkpoint", "evaluated_epoch", "collapsed")}


def collapse_warning(trial_id: str, result: dict[str, Any]) -> str:
    evaluated = "the last epoch's" if result["final_checkpoint"] == "last" else "the best validation epoch's"
    return (f"[orch] WARNING trial {trial_id}: validation clean accuracy collapsed during training "
            f"(collapsed=true); its test numbers are {evaluated} weights (epoch {result['evaluated_epoch']})")


