"""The report's figures, each registered with the section of the report it belongs to: a new
figure is one decorated function, and `orch report` draws it, saves it (PNG + PDF) and places it
in report.html. Also the data the figures plot, read from the sweeps.

A figure function takes the `Inputs` of a report and returns the figure and its caption, or None
when it has nothing to draw (and may add a note saying why).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.importance import FanovaImportanceEvaluator

from orchestrator.report import draw
from orchestrator.report.load import GROUP, Sweeps, best_configurations, configurations, finished, \
    group_title, load_sweeps, target_eps, trust_column
from orchestrator.report.pareto import pareto_front
from orchestrator.report.text import present

OPTUNA_DB = "optuna.db"  # the sweep's persisted Optuna study, when the sweep kept one
# The report's sections, in order; each figure names the one it belongs to.
SECTIONS = ("robust_vs_eps", "clean_vs_robust", "hyperparameters", "ranking", "latent")


@dataclass
class Inputs:
    """What the figures of one report read."""

    sweeps: Sweeps
    best: pd.DataFrame  # each method's best configuration (report.load.best_configurations)
    latent: list[dict] = field(default_factory=list)  # report.latent rows; empty: not analysed
    notes: list[str] = field(default_factory=list)  # what a figure could not draw, and why


@dataclass(frozen=True)
class ReportFigure:
    name: str  # also its file name: <name>.png, <name>.pdf
    section: str  # one of SECTIONS
    make: Callable[[Inputs], tuple[Figure, str] | None]


FIGURES: dict[str, ReportFigure] = {}


def figure(name: str, section: str) -> Callable:
    """Registers a report figure; a duplicate name or an unknown section fails at import."""
    if name in FIGURES:
        raise ValueError(f"report figure {name!r} is registered twice")
    if section not in SECTIONS:
        raise ValueError(f"report figure {name!r}: unknown section {section!r}; known: {', '.join(SECTIONS)}")

    def register(make: Callable[[Inputs], tuple[Figure, str] | None]) -> Callable:
        FIGURES[name] = ReportFigure(name, section, make)
        return make
    return register


@figure("robust_vs_eps", "robust_vs_eps")
def _robust_vs_eps(inputs: Inputs) -> tuple[Figure, str]:
    series, attack_set = robust_vs_eps_series(inputs.sweeps, inputs.best)
    return (draw.robust_vs_eps(series, attack_set, target_eps(inputs.sweeps.trials)),
            f"Robust accuracy vs ε of each method's best configuration (chosen on validation): per "
            f"example worst case over {attack_set}"
            f"{'; mean ± std over seeds' if (inputs.best['n_seeds'] > 1).any() else ''}. Dotted line: target ε.")


@figure("clean_vs_robust", "clean_vs_robust")
def _clean_vs_robust(inputs: Inputs) -> tuple[Figure, str]:
    panels, _ = trial_scatter(inputs.sweeps.trials)
    return (draw.clean_vs_robust(panels),
            "Clean vs robust (worst case, target ε) test accuracy of every finished trial, per method; "
            "filled markers and the step line are the Pareto front, red crosses untrusted trials.")


@figure("hp_effects", "hyperparameters")
def _hp_effects(inputs: Inputs) -> tuple[Figure, str]:
    return (draw.hp_effects(hp_points(inputs.sweeps.trials)),
            "Hyperparameter effects: robust test accuracy of every trial against λ (log scale), "
            "embedding dimension, prior and training ε.")


@figure("importances", "hyperparameters")
def _importances(inputs: Inputs) -> tuple[Figure, str] | None:
    importances, notes = study_importances(inputs.sweeps)
    inputs.notes += notes
    if not importances:
        return None
    return draw.importances(importances), "Optuna's parameter importances (fANOVA) for the robust objective, per sweep."


@figure("latent_tsne", "latent")
def _latent_tsne(inputs: Inputs) -> tuple[Figure, str] | None:
    if not inputs.latent:
        return None
    panels = {r["method"]: {"tsne": np.column_stack([r["tsne_x"], r["tsne_y"]]),
                            "label": np.asarray(r["tsne_label"]),
                            "adversarial": np.asarray(r["tsne_adversarial"])} for r in inputs.latent}
    return (draw.latent_tsne(panels),
            "t-SNE of clean and PGD-adversarial embeddings z = E(x) of each method's best trial "
            "(one joint embedding per method; colour = true class), as ER-Classifier Figs. 5-6.")


def draw_all(inputs: Inputs, out: Path) -> dict[str, str]:
    """Every registered figure that has something to draw, saved into `out`: name -> caption."""
    captions = {}
    for name, registered in FIGURES.items():
        made = registered.make(inputs)
        if made is not None:
            draw.save(made[0], out, name)
            captions[name] = made[1]
    return captions


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
    label = draw.attack_label(attack, path)
    details = []
    if attack in ("pgd", "cw", "mim") and present(steps) and steps:
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
        for hp in draw.HP_EFFECTS:
            if f"hp_{hp}" in group:
                points[method][hp] = group[f"hp_{hp}"].tolist()
    return points

def study_importances(sweeps: Sweeps) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Optuna's parameter importances for the robust objective, per sweep that persisted its
    study (`<sweep>/optuna.db`); notes for the sweeps that did not or could not be analysed."""
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


def summary_figures(sweep_dir: Path, out: Path) -> list[Path]:
    """The figures of one sweep (for its MLflow parent run): robust accuracy vs ε of its best
    configuration and clean vs robust of every trial. Nothing when no trial finished."""
    sweeps = load_sweeps([sweep_dir])
    best = best_configurations(configurations(sweeps.trials))
    if best.empty:
        return []
    inputs = Inputs(sweeps, best)
    made = {name: FIGURES[name].make(inputs) for name in ("robust_vs_eps", "clean_vs_robust")}
    (out / "captions.md").write_text("".join(f"{name}.png: {caption}\n\n" for name, (_, caption) in made.items()))
    return [path for name, (fig, _) in made.items() for path in draw.save(fig, out, name)] + [out / "captions.md"]
