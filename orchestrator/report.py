"""`orch report` and `orch compare`: read sweeps' Parquet files (and their persisted Optuna
studies), pick each method's best configuration, and draw, tabulate and analyse it.

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

import base64
import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from orchestrator import figures, parquet
from orchestrator.pareto import pareto_front
from trainables.evaluate import UPPER_BOUND_PROFILES
from trainables.selection import STRONG_METRIC

OPTUNA_DB = "optuna.db"  # the sweep's persisted Optuna study, when the sweep kept one
LATENT_FILE = "latent.parquet"
PARETO_FILE = "pareto.parquet"
HTML_FILE = "report.html"
METRICS = ("clean_acc", "pgd_acc", "autoattack_acc", "robust_acc", "val_robust_acc", STRONG_METRIC,
           "val_clean_acc")
# Only numbers measured on the same data, at the same ε, with the same attacks are ranked together.
GROUP = ["dataset", "target_eps", "eval_profile"]
TSNE_MAX_EXAMPLES = 300  # t-SNE cost grows fast; 300 points per side show the clusters


class ReportError(ValueError):
    """The sweep folders cannot be reported on; the message says why."""


@dataclass(frozen=True)
class Sweeps:
    dirs: list[Path]
    trials: pd.DataFrame  # every trial of every sweep, plus config_id, pgd_acc, autoattack_acc
    curves: pd.DataFrame


@dataclass
class Report:
    """What `write_report` produced: figure name -> caption, and notes on what was skipped."""

    figures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --- reading -------------------------------------------------------------------------------

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
    from trainables.sanity import CHECKS

    return [c for c in trials if c in CHECKS or c.removeprefix("sanity_") in CHECKS]


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"] == "FINISHED"]


# --- choosing ------------------------------------------------------------------------------

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
        if len(column) and (column.astype(str).nunique() > 1 or name in figures.HP_EFFECTS):
            names.append(name)
    return names


def config_label(row: pd.Series, names: Sequence[str]) -> str:
    parts = [f"{n}={_fmt(row[f'hp_{n}'])}" for n in names if _present(row.get(f"hp_{n}"))]
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
    upper = (f": no AutoAttack, every robust accuracy is an UPPER BOUND"
             if profile in UPPER_BOUND_PROFILES else "")
    return f"{dataset}, target ε={target_eps:.4g}, {profile} profile{upper}"


# --- the ranking table -----------------------------------------------------------------------

RANKING_HEADER = ["rank", "method", "sweep", "dataset", "target ε", "eval", "best config", "seeds",
                  "clean", "PGD", "AutoAttack", "robust (worst)", "sanity", "trusted"]


def ranking_rows(best: pd.DataFrame) -> list[list[str]]:
    """One group's rows (see ranking_groups): ranks are only meaningful within a group."""
    rows = []
    for rank, row in enumerate(best.itertuples(index=False), start=1):
        r = row._asdict()
        upper = " (upper bound)" if r["eval_profile"] in UPPER_BOUND_PROFILES else ""
        rows.append([str(rank), r["method"], r["sweep"], r["dataset"], f"{r['target_eps']:.4g}",
                     r["eval_profile"] + upper, r["config"], str(r["n_seeds"]),
                     _mean_std(r, "clean_acc"), _mean_std(r, "pgd_acc") + upper,
                     _mean_std(r, "autoattack_acc", missing="not run"), _mean_std(r, "robust_acc") + upper,
                     _sanity_text(r), _trust_text(r["trusted"])])
    return rows


def ranking_text(best: pd.DataFrame) -> str:
    """One group's ranking as an aligned text table."""
    return _text_table(RANKING_HEADER, ranking_rows(best))


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [list(header)] + [list(r) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def _mean_std(row: dict[str, Any], metric: str, missing: str = "—") -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not _present(mean):
        return missing
    return f"{mean:.3f} ± {std:.3f}" if _present(std) else f"{mean:.3f}"


def _sanity_text(row: dict[str, Any]) -> str:
    if row["trusted"] is None and not row["failed_checks"]:
        text = "not recorded"
    else:
        text = "failed: " + ", ".join(row["failed_checks"]) if row["failed_checks"] else "all passed"
    return text + ("; FLAT CURVE: robust = clean at every ε (constant predictions?)" if row["flat_curve"] else "")


def _trust_text(trusted: bool | None) -> str:
    return {True: "yes", False: "NO (untrusted)", None: "unknown"}[trusted]


def compare_text(dirs: Sequence[Path]) -> str:
    """What `orch compare` prints: per (dataset, target ε, profile) group, a title line and its
    ranking table; groups are never ranked against each other."""
    best = best_configurations(configurations(load_sweeps(dirs).trials))
    if best.empty:
        return "no finished trials"
    groups = ranking_groups(best)
    tables = [f"{title}: methods ranked by test robust accuracy of their best configuration "
              f"(chosen on validation; mean ± std over seeds):\n" + ranking_text(rows)
              for title, rows in groups]
    note = (f"{len(groups)} groups of (dataset, target ε, evaluation profile), each ranked on its "
            "own: numbers from different groups are not comparable.\n\n") if len(groups) > 1 else ""
    return note + "\n\n".join(tables)


SUMMARY_HEADER = ["config", "seeds", "val clean", "val robust", "test clean", "test robust"]


def sweep_summary(sweep_dir: Path, pareto: bool, top: int = 10) -> str:
    """The configurations of one sweep by mean validation robust accuracy (the strong attack the
    search maximised), mean ± std over seeds;
    with `pareto`, the (val clean, val robust) Pareto front of the configurations is marked: the
    front a clean+robust search optimised (Optuna's study keeps it too)."""
    configs = configurations(load_sweeps([sweep_dir]).trials)
    if configs.empty:
        return "no finished configurations"
    points = list(zip(configs["val_clean_acc_mean"], configs[f"{STRONG_METRIC}_mean"]))
    configs = configs.assign(pareto=[i in set(pareto_front(points)) for i in range(len(configs))])
    configs = configs.sort_values(f"{STRONG_METRIC}_mean", ascending=False).head(top)
    header = SUMMARY_HEADER + (["Pareto"] if pareto else [])
    rows = [[r["config"], str(r["n_seeds"]), _mean_std(r, "val_clean_acc"), _mean_std(r, STRONG_METRIC),
             _mean_std(r, "clean_acc"), _mean_std(r, "robust_acc")] + (["*" if r["pareto"] else ""] if pareto else [])
            for r in configs.to_dict("records")]
    title = "configurations (mean ± std over seeds)" + (", * = Pareto front on validation" if pareto else "")
    return title + ":\n" + _text_table(header, rows)


# --- figures ---------------------------------------------------------------------------------

def _target_eps(trials: pd.DataFrame) -> float | None:
    values = finished(trials)["target_eps"].dropna().unique()
    return float(values[0]) if len(values) == 1 else None


def robust_vs_eps_series(sweeps: Sweeps, best: pd.DataFrame) -> tuple[dict[str, dict], str]:
    """Per method: the worst-case curve of its best configuration, mean ± std over seeds (with the
    clean accuracy at ε = 0); and the attack set the worst case is over."""
    series, attacks = {}, set()
    several = best[GROUP].drop_duplicates().shape[0] > 1
    for row in best.itertuples(index=False):
        curves = sweeps.curves[(sweeps.curves["sweep"] == row.sweep)
                               & sweeps.curves["trial_id"].isin(row.trial_ids)]
        worst = curves[curves["attack"] == "worst"][["trial_id", "eps", "accuracy"]]
        clean = curves[curves["attack"] == "clean"][["trial_id", "accuracy"]].assign(eps=0.0)
        by_eps = pd.concat([clean, worst]).groupby("eps")["accuracy"]
        std = by_eps.std(ddof=1) if row.n_seeds > 1 else by_eps.mean() * np.nan
        seeds = f", {row.n_seeds} seeds" if row.n_seeds > 1 else ""
        # One curve per method and group: the same method may be in several groups.
        name = f"{row.method} ({group_title(row.dataset, row.target_eps, row.eval_profile)})" \
            if several else row.method
        series[name] = {"eps": list(by_eps.mean().index), "mean": list(by_eps.mean()),
                        "std": list(std), "label": f"{name}{seeds}"}
        linf = curves[(curves["norm"] == "Linf") & ~curves["attack"].isin(["worst", "clean"])]
        grid = set(worst["eps"])
        for (attack, path, steps, restarts), runs in linf.groupby(["attack", "path", "steps", "restarts"]):
            attacks.add(_attack_budget(attack, path, steps, restarts, set(runs["eps"]), grid))
    return series, ", ".join(sorted(attacks)) or "no attack"


def _attack_budget(attack: str, path: str, steps: Any, restarts: Any, eps: set[float],
                   grid: set[float]) -> str:
    """E.g. "PGD-L∞ (20 steps, 5 restarts)", "AutoAttack (at ε = 0.3 only)"."""
    label = figures.attack_label(attack, path)
    details = []
    if attack in ("pgd", "cw", "mim") and _present(steps) and steps:
        details.append(f"{int(steps)} steps, {int(restarts)} restart{'s' if restarts != 1 else ''}")
    if eps < grid:  # AutoAttack runs at the target ε only
        details.append("at ε = " + ", ".join(f"{e:.4g}" for e in sorted(eps)) + " only")
    return label + (f" ({'; '.join(details)})" if details else "")


def trial_scatter(trials: pd.DataFrame) -> tuple[dict[str, dict], pd.DataFrame]:
    """Per method, every finished trial's (clean, robust) with its Pareto flag; and the flags
    as a table (what pareto.parquet holds)."""
    panels, tables = {}, []
    for method, group in finished(trials).groupby("method"):
        points = list(zip(group["clean_acc"].astype(float), group["robust_acc"].astype(float)))
        front = set(pareto_front(points))
        on_front = [i in front for i in range(len(points))]
        # None or NaN: not checked, drawn as trusted; only an explicit False is marked.
        column = trust_column(group)
        trusted = [bool(t != False) for t in (group[column] if column else [None] * len(group))]  # noqa: E712
        panels[method] = {"clean": group["clean_acc"].tolist(), "robust": group["robust_acc"].tolist(),
                          "pareto": on_front, "trusted": trusted}
        tables.append(group[["sweep", "method", "trial_id", "config_id", "clean_acc", "robust_acc"]]
                      .assign(pareto=on_front))
    return panels, pd.concat(tables, ignore_index=True)


def hp_points(trials: pd.DataFrame) -> dict[str, dict[str, list]]:
    points = {}
    for method, group in finished(trials).groupby("method"):
        points[method] = {"robust": group["robust_acc"].tolist()}
        for hp in figures.HP_EFFECTS:
            if f"hp_{hp}" in group:
                points[method][hp] = group[f"hp_{hp}"].tolist()
    return points


def study_importances(sweeps: Sweeps) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Optuna's parameter importances for the robust objective, per sweep that persisted its
    study (`<sweep>/optuna.db`); notes for the sweeps that did not or could not be analysed."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    panels, notes = {}, []
    for folder in sweeps.dirs:
        db = folder / OPTUNA_DB
        label = _sweep_label(sweeps.trials, folder)
        if not db.is_file():
            notes.append(f"{label}: no {OPTUNA_DB} in the sweep folder, so no parameter importances")
            continue
        storage = f"sqlite:///{db.resolve()}"
        for name in optuna.get_all_study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage)
            try:
                # The robust objective is the last value in both single and multi-objective
                # studies. fANOVA (variance decomposition) does not depend on the direction.
                panels[label] = optuna.importance.get_param_importances(
                    study, evaluator=FanovaImportanceEvaluator(seed=0), target=lambda t: t.values[-1])
            except (RuntimeError, ValueError) as error:
                notes.append(f"{label}: parameter importances unavailable ({error})")
    return panels, notes


def _sweep_label(trials: pd.DataFrame, folder: Path) -> str:
    mine = trials[trials["sweep"] == folder.name]
    return f"{mine['method'].iloc[0]} ({folder.name})" if len(mine) else folder.name


# --- latent analyses -------------------------------------------------------------------------

def latent_rows(sweeps: Sweeps, best: pd.DataFrame, n_examples: int) -> tuple[list[dict], list[str]]:
    """The papers' latent analyses of each method's best trial (its best seed by validation),
    restored from its checkpoint. Rows for latent.parquet, and notes on trials skipped."""
    from trainables.checkpoint import CheckpointRefused, load_state_file, restore
    from trainables.latent import analyse

    rows, notes = [], []
    for row in best.itertuples(index=False):
        trial = sweeps.trials[(sweeps.trials["sweep"] == row.sweep)
                              & (sweeps.trials["trial_id"] == row.best_trial)].iloc[0]
        checkpoint = trial["checkpoint_uri"]
        if not _present(checkpoint) or not Path(checkpoint).exists():
            notes.append(f"{row.method}: checkpoint {checkpoint} not found, no latent analysis")
            continue
        try:
            state = load_state_file(checkpoint)
        except CheckpointRefused as error:  # corrupt, or crafted to run code: never unpickled
            notes.append(f"{row.method}: {error}, no latent analysis")
            continue
        config, method, data = restore(state)
        result = analyse(method, data, float(trial["target_eps"]), config.eval.eval_steps,
                         n_examples, min(n_examples, TSNE_MAX_EXAMPLES))
        rows.append({
            "sweep": row.sweep, "method": row.method, "trial_id": row.best_trial,
            "config_id": row.config_id, "config": row.config, "attack": "pgd",
            "steps": config.eval.eval_steps, **_scalars(result),
            "tsne_x": result.tsne[:, 0].tolist(), "tsne_y": result.tsne[:, 1].tolist(),
            "tsne_label": result.tsne_label.tolist(), "tsne_adversarial": result.tsne_adversarial.tolist(),
        })
    return rows, notes


def _scalars(result: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(result).items() if not isinstance(v, np.ndarray)}


LATENT_HEADER = ["method", "trial", "ε", "n", "adv. acc", "sensitivity median (± std)",
                 "separation r", "kNN clean", "kNN adv."]


def latent_table(rows: list[dict]) -> list[list[str]]:
    return [[r["method"], r["trial_id"], f"{r['eps']:.4g}", str(r["n_examples"]), f"{r['adv_acc']:.3f}",
             f"{r['sensitivity_median']:.3f} ± {r['sensitivity_std']:.3f}",
             _fmt(r["separation_ratio"]), f"{r['knn_clean_acc']:.3f}", f"{r['knn_adv_acc']:.3f}"]
            for r in rows]


# --- writing ---------------------------------------------------------------------------------

def summary_figures(sweep_dir: Path, out: Path) -> list[Path]:
    """The figures of one sweep (for its MLflow parent run): robust accuracy vs ε of its best
    configuration and clean vs robust of every trial. Nothing when no trial finished."""
    sweeps = load_sweeps([sweep_dir])
    best = best_configurations(configurations(sweeps.trials))
    if best.empty:
        return []
    series, attack_set = robust_vs_eps_series(sweeps, best)
    panels, _ = trial_scatter(sweeps.trials)
    return (figures.save(figures.robust_vs_eps(series, attack_set, _target_eps(sweeps.trials)),
                         out, "robust_vs_eps")
            + figures.save(figures.clean_vs_robust(panels), out, "clean_vs_robust"))


def write_report(dirs: Sequence[Path], out: Path, latent_examples: int = 500) -> Report:
    """Every figure (PNG + PDF), pareto.parquet, latent.parquet and report.html into `out`.
    latent_examples = 0 skips the latent analyses."""
    sweeps = load_sweeps(dirs)
    best = best_configurations(configurations(sweeps.trials))
    if best.empty:
        raise ReportError("no finished trials in " + ", ".join(map(str, dirs)))
    out.mkdir(parents=True, exist_ok=True)
    report = Report()
    target = _target_eps(sweeps.trials)

    series, attack_set = robust_vs_eps_series(sweeps, best)
    figures.save(figures.robust_vs_eps(series, attack_set, target), out, "robust_vs_eps")
    report.figures["robust_vs_eps"] = (
        f"Robust accuracy vs ε of each method's best configuration (chosen on validation): per "
        f"example worst case over {attack_set}; mean ± std over seeds. Dotted line: target ε.")

    panels, pareto = trial_scatter(sweeps.trials)
    parquet_write(pareto, out / PARETO_FILE)
    figures.save(figures.clean_vs_robust(panels), out, "clean_vs_robust")
    report.figures["clean_vs_robust"] = (
        "Clean vs robust (worst case, target ε) test accuracy of every finished trial, per method; "
        "filled markers and the step line are the Pareto front, red crosses untrusted trials.")

    figures.save(figures.hp_effects(hp_points(sweeps.trials)), out, "hp_effects")
    report.figures["hp_effects"] = (
        "Hyperparameter effects: robust test accuracy of every trial against λ (log scale), "
        "embedding dimension, prior and training ε.")

    importances, notes = study_importances(sweeps)
    report.notes += notes
    if importances:
        figures.save(figures.importances(importances), out, "importances")
        report.figures["importances"] = ("Optuna's parameter importances (fANOVA) for the robust "
                                         "objective, per sweep.")

    latent: list[dict] = []
    if latent_examples > 0:
        latent, notes = latent_rows(sweeps, best, latent_examples)
        report.notes += notes
    if latent:
        parquet_write(pd.DataFrame(latent), out / LATENT_FILE)
        panels_tsne = {r["method"]: {"tsne": np.column_stack([r["tsne_x"], r["tsne_y"]]),
                                     "label": np.asarray(r["tsne_label"]),
                                     "adversarial": np.asarray(r["tsne_adversarial"])} for r in latent}
        figures.save(figures.latent_tsne(panels_tsne), out, "latent_tsne")
        report.figures["latent_tsne"] = (
            "t-SNE of clean and PGD-adversarial embeddings z = E(x) of each method's best trial "
            "(one joint embedding per method; colour = true class), as ER-Classifier Figs. 5-6.")

    (out / HTML_FILE).write_text(render_html(sweeps, best, latent, report, out))
    return report


def parquet_write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def render_html(sweeps: Sweeps, best: pd.DataFrame, latent: list[dict], report: Report, out: Path) -> str:
    """One self-contained page: figures inlined as data: URIs, tables, notes."""
    sections = [
        ("1. Robust accuracy vs ε", _figure_html(out, "robust_vs_eps", report)),
        ("2. Clean vs robust accuracy, Pareto fronts", _figure_html(out, "clean_vs_robust", report)),
        ("3. Hyperparameter effects", _figure_html(out, "hp_effects", report)
         + _figure_html(out, "importances", report)),
        ("4. Ranking", _ranking_html(best)),
        ("5. Latent analyses of each method's best trial", _latent_html(latent)
         + _figure_html(out, "latent_tsne", report)),
    ]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    sweeps_list = ", ".join(html.escape(d.name) for d in sweeps.dirs)
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>orch report: {sweeps_list}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style></head>
<body><h1>Robustness sweep report</h1>
<p>Sweeps: {sweeps_list}. Generated {time.strftime('%Y-%m-%d %H:%M')} by <code>orch report</code>;
figures are also in this folder as PNG and PDF.</p>
{body}
{f'<section><h2>Notes</h2><ul>{notes}</ul></section>' if notes else ''}
</body></html>
"""


_CSS = """body{font-family:system-ui,sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f0f0f0}tr.untrusted td{background:#fde2e2}tr.flat td{background:#fdf1d6}figure{margin:1em 0}
figcaption{font-size:13px;color:#555;max-width:900px}img{max-width:100%;height:auto}"""


def _figure_html(out: Path, name: str, report: Report) -> str:
    if name not in report.figures:
        return ""
    data = base64.b64encode((out / f"{name}.png").read_bytes()).decode()
    width, height = figures.png_size(out / f"{name}.png")
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{name}"><figcaption>{html.escape(report.figures[name])} '
            f'Files: {name}.png, {name}.pdf.</figcaption></figure>')


def _table_html(header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{classes[i] if i < len(classes) else ""}">'
        + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ranking_html(best: pd.DataFrame) -> str:
    intro = ("<p>Methods ranked by the test robust accuracy at the target ε (worst case over the "
             "attack set) of their best configuration, chosen by mean validation robust accuracy "
             "(PGD-CE and APGD-DLR) over seeds; one table per dataset, target ε and evaluation "
             "profile, never ranked across them. Rows in red failed a sanity check of the "
             "evaluation: their robustness is not to be trusted. Rows in amber have a flat curve: "
             "no attack changed any prediction, as for a constant classifier.</p>")
    tables = []
    for title, rows in ranking_groups(best):
        classes = ["untrusted" if t is False else "flat" if flat else ""
                   for t, flat in zip(rows["trusted"], rows["flat_curve"])]
        tables.append(f"<h3>{html.escape(title)}</h3>"
                      + _table_html(RANKING_HEADER, ranking_rows(rows), classes))
    return intro + "".join(tables)


def _latent_html(latent: list[dict]) -> str:
    from trainables.latent import KNN_K

    if not latent:
        return "<p>No latent analyses (see the notes).</p>"
    return ("<p>On test points, x' = PGD-L∞ at the target ε through the full inference path. "
            "Sensitivity ‖E(x)−E(x')‖/‖E(x)‖ (AFD, lower is better); separation ratio r of "
            "misclassified adversaries from their false class (TLA Table 2, higher is better); "
            f"accuracy of a {KNN_K}-NN classifier fitted on clean training embeddings (TLA Table 3). "
            f"Also in {LATENT_FILE}.</p>" + _table_html(LATENT_HEADER, latent_table(latent)))


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, (float, np.floating)) and math.isnan(value))
