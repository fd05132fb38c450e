"""Reading sweeps for reports: both Parquet files of every sweep folder (with what older sweeps
lack filled in), each configuration's mean ± std over its seeds, and each method's best
configuration.

Selection is honest: a method's best configuration is the one with the highest *validation*
robust accuracy under the strong attack (mean over its seeds), the quantity the search optimised;
test numbers are only reported for it, never used to choose. A configuration is the set of
hyperparameters of a trial without its seed (`config_id`); its seed replicates are aggregated as
mean ± std.

Rankings compare like with like: numbers are only ranked against numbers of the same dataset,
target ε and evaluation profile (`GROUP`); several groups give several tables. A profile without
AutoAttack (`quick`) gives robust accuracies that are upper bounds, and says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from orchestrator.records import parquet
from orchestrator.report import draw
from orchestrator.report.text import fmt, present
from trainables.evaluate import UPPER_BOUND_PROFILES
from trainables.sanity import CHECKS
from trainables.selection import STRONG_METRIC

METRICS = ("clean_acc", "pgd_acc", "autoattack_acc", "robust_acc", "val_robust_acc", STRONG_METRIC,
           "val_clean_acc")

# Only numbers measured on the same data, at the same ε, with the same attacks are ranked together.
GROUP = ["dataset", "target_eps", "eval_profile"]

class ReportError(ValueError):
    """The sweep folders cannot be reported on; the message says why."""

@dataclass(frozen=True)
class Sweeps:
    dirs: list[Path]
    trials: pd.DataFrame  # every trial of every sweep, plus config_id, pgd_acc, autoattack_acc
    curves: pd.DataFrame

def load_sweeps(dirs: Sequence[Path]) -> Sweeps:
    """Both Parquet files of every sweep folder; ReportError if a folder is not a sweep. (A sweep
    whose trials all failed has no curves.parquet.)"""
    for folder in dirs:
        if not (Path(folder) / parquet.TRIALS_FILE).is_file():
            raise ReportError(f"{folder} has no {parquet.TRIALS_FILE}: is it a sweep directory?")
    trials = _concat([pd.read_parquet(Path(d) / parquet.TRIALS_FILE) for d in dirs])
    curves = _concat([pd.read_parquet(Path(d) / parquet.CURVES_FILE) for d in dirs
                      if (Path(d) / parquet.CURVES_FILE).is_file()]
                     or [parquet.to_table([], "curves").to_pandas()])
    # The same sweep given twice must not count its trials twice.
    trials = trials.drop_duplicates(["sweep", "trial_id"], ignore_index=True)
    curves = curves.drop_duplicates(["sweep", "trial_id", "attack", "norm", "eps"]
                                    + (["path"] if "path" in curves else []), ignore_index=True)
    if "path" not in curves:
        curves["path"] = "predict"  # sweeps from before the attack suite attacked predict only
    curves["path"] = curves["path"].fillna("predict")
    trials = _with_config_id(trials)
    trials["pgd_acc"] = _curve_at_target(curves, trials, "pgd")
    trials["flat_curve"] = _flat_curves(curves, trials)
    # Sweeps from before trials.parquet had the column: AutoAttack's curve point, where it ran.
    from_curves = _curve_at_target(curves, trials, "autoattack")
    trials["autoattack_acc"] = trials["autoattack_acc"].fillna(from_curves) if "autoattack_acc" in trials \
        else from_curves
    # Sweeps from before the strong validation attack: their search read the per-epoch PGD.
    trials[STRONG_METRIC] = trials[STRONG_METRIC].fillna(trials["val_robust_acc"]) \
        if STRONG_METRIC in trials else trials["val_robust_acc"]
    # ... and from before trials.parquet said which profile evaluated them: their curve says.
    from_curves = _profile_from_curves(curves, trials)
    trials["eval_profile"] = trials["eval_profile"].fillna(from_curves) if "eval_profile" in trials \
        else from_curves
    trials["robust_is_upper_bound"] = trials["eval_profile"].isin(UPPER_BOUND_PROFILES)
    return Sweeps([Path(d) for d in dirs], trials, curves)

def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    non_empty = [f for f in frames if len(f)] or frames[:1]  # pandas warns on concatenating empty frames
    return pd.concat(non_empty, ignore_index=True)

def hp_names(trials: pd.DataFrame) -> list[str]:
    """Hyperparameter columns without the `hp_` prefix; the seed is not a hyperparameter."""
    return [c[3:] for c in trials if c.startswith("hp_") and c != "hp_seed"]

def _with_config_id(trials: pd.DataFrame) -> pd.DataFrame:
    """Sweeps written before `config_id` existed: the hp values themselves identify a config."""
    built = trials[[f"hp_{h}" for h in hp_names(trials)]].map(str).agg("|".join, axis=1)
    if "config_id" not in trials:
        return trials.assign(config_id=built)
    return trials.assign(config_id=trials["config_id"].astype(object).fillna(built))

def _curve_at_target(curves: pd.DataFrame, trials: pd.DataFrame, attack: str) -> pd.Series:
    """Per trial, the accuracy of `attack` on the full inference path at the ε nearest to the
    trial's target ε (NaN when that attack did not run)."""
    points = curves[(curves["attack"] == attack) & (curves["path"] == "predict")]
    points = points.merge(trials[["sweep", "trial_id", "target_eps"]], on=["sweep", "trial_id"])
    if points.empty:
        return pd.Series(np.nan, index=trials.index)
    points = points.assign(distance=(points["eps"] - points["target_eps"]).abs())
    nearest = points.sort_values("distance").drop_duplicates(["sweep", "trial_id"])
    accuracy = nearest.set_index(["sweep", "trial_id"])["accuracy"]
    keys = pd.MultiIndex.from_frame(trials[["sweep", "trial_id"]])
    return pd.Series(accuracy.reindex(keys).to_numpy(), index=trials.index)

def _profile_from_curves(curves: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    """Per trial, the evaluation profile its curve's attacks imply (trainables.evaluate.plan):
    `full` with any of its grid attacks, `standard` with AutoAttack, else `quick`."""
    attacks = curves.groupby(["sweep", "trial_id"])["attack"].agg(set)
    keys = pd.MultiIndex.from_frame(trials[["sweep", "trial_id"]])
    return pd.Series([_profile_of(a) for a in attacks.reindex(keys)], index=trials.index)

def _profile_of(attacks: set[str] | float) -> str:
    attacks = attacks if isinstance(attacks, set) else set()  # NaN: a trial without a curve
    return "full" if attacks & {"mim", "square", "pgd-l2"} else "standard" if "autoattack" in attacks else "quick"

def _flat_curves(curves: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    """Per trial: the worst-case accuracy equals the clean accuracy at every ε. No attack changed
    a single prediction: typically a constant classifier, whose "robust accuracy" is the share
    of its one class — a number that ranks well when every real defense is near zero."""
    worst = curves[curves["attack"] == "worst"].groupby(["sweep", "trial_id"])["accuracy"].min()
    clean = curves[curves["attack"] == "clean"].groupby(["sweep", "trial_id"])["accuracy"].max()
    flat = (worst >= clean - 1e-9).reindex(pd.MultiIndex.from_frame(trials[["sweep", "trial_id"]]))
    return pd.Series(flat.fillna(False).to_numpy(dtype=bool), index=trials.index)

def sanity_columns(trials: pd.DataFrame) -> list[str]:
    """The per-check boolean columns, when the sweep recorded them (bare or `sanity_` names)."""
    return [c for c in trials if c in CHECKS or c.removeprefix("sanity_") in CHECKS]

def finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"] == "FINISHED"]

def configurations(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep, method, config_id) of finished trials: mean and std of METRICS over
    its seeds, the seeds, its best replicate (by validation), trust and failed sanity checks."""
    done = finished(trials)
    checks = sanity_columns(done)
    rows = []
    for (sweep, method, config), group in done.groupby(["sweep", "method", "config_id"], sort=False):
        row: dict[str, Any] = {"sweep": sweep, "method": method, "config_id": config,
                               **{key: group[key].iloc[0] for key in GROUP},
                               "n_seeds": len(group), "trial_ids": list(group["trial_id"]),
                               "best_trial": _by_validation(group, "trial_id")["trial_id"].iloc[0]}
        for metric in METRICS:
            values = group[metric].dropna().astype(float) if metric in group else pd.Series(dtype=float)
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        row["failed_checks"] = sorted(c.removeprefix("sanity_") for c in checks
                                      if (group[c] == False).any())  # noqa: E712  (None: not run)
        row["trusted"] = _trusted(group)
        row["flat_curve"] = bool(group["flat_curve"].all())
        row["config"] = config_label(group.iloc[0], _shown_hps(trials[trials["method"] == method]))
        rows.append(row)
    return pd.DataFrame(rows)

def _by_validation(frame: pd.DataFrame, key: str, suffix: str = "") -> pd.DataFrame:
    """Best first: validation robust accuracy under the strong attack (what the search
    maximised), then validation clean accuracy, then `key` (so ties, common on small validation
    splits, always break the same way)."""
    robust, clean = f"{STRONG_METRIC}{suffix}", f"val_clean_acc{suffix}"
    columns = [c for c in (robust, clean) if c in frame] + [key]
    return frame.sort_values(columns, ascending=[False] * (len(columns) - 1) + [True], na_position="last")

def trust_column(trials: pd.DataFrame) -> str | None:
    """The AND of a trial's sanity checks, when recorded (`sanity_trusted`, or bare `trusted`)."""
    return next((c for c in ("sanity_trusted", "trusted") if c in trials), None)

def _trusted(group: pd.DataFrame) -> bool | None:
    """False if any replicate is untrusted, True if all are trusted, None if never checked."""
    column = trust_column(group)
    if column is None or group[column].isna().all():
        return None
    return bool((group[column].dropna() == True).all())  # noqa: E712

def _shown_hps(method_trials: pd.DataFrame) -> list[str]:
    """The hyperparameters worth naming: those the search varied, and the common dimensions."""
    names = []
    for name in hp_names(method_trials):
        column = method_trials[f"hp_{name}"].dropna()
        if len(column) and (column.astype(str).nunique() > 1 or name in draw.HP_EFFECTS):
            names.append(name)
    return names

def config_label(row: pd.Series, names: Sequence[str]) -> str:
    parts = [f"{n}={fmt(row[f'hp_{n}'])}" for n in names if present(row.get(f"hp_{n}"))]
    return " ".join(parts) or "(defaults)"

def best_configurations(configs: pd.DataFrame) -> pd.DataFrame:
    """Per group (dataset, target ε, profile) and method, the configuration with the best mean
    validation robust accuracy (ties: mean validation clean accuracy); within each group, ranked
    by test robust accuracy (worst case at the target ε)."""
    if configs.empty:
        return configs
    best = _by_validation(configs, "config_id", "_mean").drop_duplicates([*GROUP, "method"])
    return best.sort_values([*GROUP, "robust_acc_mean"], ascending=[True] * len(GROUP) + [False],
                            na_position="last").reset_index(drop=True)

def ranking_groups(best: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The ranking split into its (dataset, target ε, profile) groups, each with its title."""
    return [(group_title(*key), rows.reset_index(drop=True))
            for key, rows in best.groupby(GROUP, sort=True, dropna=False)]

def group_title(dataset: str, target_eps: float, profile: str) -> str:
    upper = (": no AutoAttack, every robust accuracy is an UPPER BOUND"
             if profile in UPPER_BOUND_PROFILES else "")
    return f"{dataset}, target ε={target_eps:.4g}, {profile} profile{upper}"

def target_eps(trials: pd.DataFrame) -> float | None:
    values = finished(trials)["target_eps"].dropna().unique()
    return float(values[0]) if len(values) == 1 else None
