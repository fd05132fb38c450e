"""`orch benchmark PRESET`: every method searched on the same budget, its best configuration
re-trained on fresh seeds and evaluated once on the same test points, then one leaderboard.

Per method, under `<results-dir>/<name>/`:
1. `<method>-search`: an ordinary sweep of N Optuna trials (the paper's defaults first), ASHA on
   the per-epoch validation PGD, the same epochs, data, model and target ε for every method, the
   weights of the best validation epoch (`--final-checkpoint best`) for every method. The test
   split is not read (`evaluate_test=false`): Optuna sees the strong validation attack only.
2. The best configuration by that validation number.
3. `<method>-seeds`: the configuration re-trained with K seeds the search never used (the search's
   seed + 1, + 2, ...), each evaluated once with the standard profile on the first T test points,
   its per-example outcomes recorded in examples.parquet.
A stage that finished is never run again: `--resume --name NAME` continues where a kill left
off, a search or seed sweep that was interrupted continues from its checkpoints. On another
machine, `--continue-from` takes the searches that ended and the attacks the seeds' evaluations
finished (`<method>-evaluations/`) from a copy of the folder or its committed records.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import click
import pandas as pd

from orchestrator import options
from orchestrator.records import parquet
from orchestrator.report.benchmark import BenchmarkPreset
from orchestrator.sweep import campaign
from orchestrator.sweep.resume import SWEEP_FILE, load_sweep
from trainables.selection import STRONG_METRIC


def search_dir(root: Path, method: str) -> Path:
    return root / f"{method}-search"


def seeds_dir(root: Path, method: str) -> Path:
    return root / f"{method}-seeds"


def evaluations_dir(root: Path, method: str) -> Path:
    """Where the fresh seeds' final evaluations keep their finished attacks: beside the sweeps,
    not in them, so that a copy (committed records) can be carried into a new benchmark folder
    before its seeds sweep exists."""
    return root / f"{method}-evaluations"


def _settings(preset: BenchmarkPreset, method: str, root: Path, name: str, sets: list[str],
              given: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {**options.defaults(), "method": method, "dataset": preset.dataset, "model": preset.model,
            "name": name, "results_dir": str(root), "final_checkpoint": "best",
            "eval_examples": preset.test_examples, "eval_profile": "standard",
            "sets": [*(f"{k}={v}" for k, v in preset.sets.items()), *sets], **given, **overrides}


def search_settings(preset: BenchmarkPreset, method: str, root: Path, given: dict[str, Any]) -> dict[str, Any]:
    """Stage 1: the search, validation only."""
    return _settings(preset, method, root, search_dir(root, method).name, ["evaluate_test=false"], given,
                     trials=preset.trials, epochs=preset.epochs)


def seeds_settings(preset: BenchmarkPreset, method: str, root: Path, chosen: dict[str, Any],
                   given: dict[str, Any]) -> dict[str, Any]:
    """Stage 3: the chosen configuration (every searched value fixed) on K fresh seeds."""
    fixed = [f"{key}={value}" for key, value in chosen.items()]
    return _settings(preset, method, root, seeds_dir(root, method).name, fixed, given,
                     trials=1, seeds=preset.seeds, epochs=preset.epochs, scheduler="fifo",
                     seed=given.get("seed", 0) + 1, evaluations_dir=str(evaluations_dir(root, method)))


def search_ended(root: Path, method: str, trials: int) -> bool:
    path = search_dir(root, method) / parquet.TRIALS_FILE
    return path.is_file() and len(parquet.read_rows(path)) >= trials


def chosen_configuration(root: Path, method: str, preset: BenchmarkPreset) -> dict[str, Any]:
    """The search's best finished trial by the strong validation attack: its searched values
    (not what every search trial was given: the preset's --set values, evaluate_test)."""
    trials = pd.read_parquet(search_dir(root, method) / parquet.TRIALS_FILE)
    finished = trials[(trials["status"] == "FINISHED") & trials[STRONG_METRIC].notna()]
    if finished.empty:
        raise campaign.BadInput(f"benchmark: no search trial of {method} finished, nothing to re-train")
    best = finished.sort_values([STRONG_METRIC, "val_clean_acc", "trial_id"],
                                ascending=[False, False, True]).iloc[0]
    given = {*preset.sets, "evaluate_test", "seed"}
    searched = [c for c in trials if c.startswith("hp_") and c.removeprefix("hp_") not in given]
    return {c.removeprefix("hp_"): _plain(best[c]) for c in searched if pd.notna(best[c])}


def _plain(value: Any) -> Any:
    """numpy scalars as the Python values --set parses back."""
    return value.item() if hasattr(value, "item") else value


# What makes two searches of a method the same search: a search run with other values chose
# among other trainings and is not adopted.
SAME_SEARCH = ("dataset", "model", "epochs", "trials", "seed", "sets", "eval_examples", "final_checkpoint")


def searches_to_adopt(root: Path, preset: BenchmarkPreset, methods: list[str], given: dict[str, Any],
                      source: Path) -> list[str]:
    """The methods whose search ended under `source` (a benchmark folder, or committed records:
    `<method>-search/` with sweep.json and trials.parquet) and has not under `root`. BadInput
    when such a search ran with other settings than this benchmark would give it."""
    adopted = []
    for method in methods:
        if search_ended(root, method, preset.trials) or not search_ended(source, method, preset.trials):
            continue
        found = search_dir(source, method)
        try:
            saved = load_sweep(found).settings
        except ValueError as error:
            raise campaign.BadInput(f"--continue-from: {error}") from None
        expected = search_settings(preset, method, root, given)
        differ = [key for key in SAME_SEARCH if json.loads(json.dumps(expected[key])) != saved.get(key)]
        if differ:
            key = differ[0]
            raise campaign.BadInput(f"--continue-from: {found} ran with {key}={saved.get(key)}, this benchmark "
                                    f"gives {key}={expected[key]}: a different search")
        adopted.append(method)
    return adopted


def adopt_searches(root: Path, preset: BenchmarkPreset, methods: list[str], given: dict[str, Any],
                   source: Path) -> list[str]:
    """Each search `searches_to_adopt` finds becomes this benchmark's (its sweep.json and
    trials.parquet copied): a benchmark too long for one machine continues on another from its
    records without searching again. Returns the methods adopted."""
    adopted = searches_to_adopt(root, preset, methods, given, source)
    for method in adopted:
        target = search_dir(root, method)
        target.mkdir(parents=True, exist_ok=True)
        for name in (SWEEP_FILE, parquet.TRIALS_FILE):
            shutil.copy2(search_dir(source, method) / name, target / name)
    return adopted


def adopt_evaluations(root: Path, preset: BenchmarkPreset, methods: list[str], source: Path) -> dict[str, int]:
    """For each method whose seeds have not all finished here, the attacks its seeds'
    evaluations finished under `source` (`<method>-evaluations/`, e.g. committed from a machine
    that was stopped mid-evaluation) are copied here, file by file, never over one kept here.
    They are named by a hash of the weights, points and attack plan: a seed re-trained to the
    same weights (same torch, same threads per trial) continues from them, any other model is
    attacked from the start. Returns, per method, how many models' evaluations were found."""
    found = {}
    for method in methods:
        kept = evaluations_dir(source, method)
        if campaign.finished_trials(seeds_dir(root, method)) >= preset.seeds or not kept.is_dir():
            continue
        for path in kept.rglob("*.pt"):
            target = evaluations_dir(root, method) / path.relative_to(kept)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        found[method] = sum(1 for folder in kept.iterdir() if folder.is_dir())
    return found


def continue_from(root: Path, preset: BenchmarkPreset, methods: list[str], given: dict[str, Any], source: Path) -> None:
    """--continue-from: what another machine finished is taken, and said."""
    for method in adopt_searches(root, preset, methods, given, source):
        click.echo(f"[orch] {method}: its search ended in {source}; not searched again")
    for method, models in adopt_evaluations(root, preset, methods, source).items():
        click.echo(f"[orch] {method}: the finished attacks of {models} evaluation(s) begun in {source} are kept: a "
                   "seed re-trained to the same weights continues from them, other weights are attacked from the start")


SETTINGS_FILE = "benchmark.json"


def saved_preset(root: Path, preset: BenchmarkPreset, methods: list[str], resume: bool) -> tuple[BenchmarkPreset, list[str]]:
    """A new benchmark saves its preset (with the flags' overrides) and methods; --resume reads
    them back, so the continued benchmark is the same one."""
    path = root / SETTINGS_FILE
    if not resume:
        root.mkdir(parents=True)
        path.write_text(json.dumps({"preset": dataclasses.asdict(preset), "methods": methods}, indent=1))
        return preset, methods
    if not path.is_file():
        raise campaign.BadInput(f"--resume: {root} holds no benchmark (no {SETTINGS_FILE})")
    saved = json.loads(path.read_text())
    return BenchmarkPreset(**saved["preset"]), saved["methods"]


def run(root: Path, preset: BenchmarkPreset, methods: list[str], given: dict[str, Any], resume_command: str) -> None:
    """Each method in turn: its search (unless it ended), then its fresh seeds (unless K finished).
    Interrupted, it says `resume_command`, which continues the whole benchmark."""
    for method in methods:
        if not search_ended(root, method, preset.trials):
            campaign.run_all(campaign.plan([(search_dir(root, method),
                                             lambda: search_settings(preset, method, root, given))]),
                              resume_command)
        if campaign.finished_trials(seeds_dir(root, method)) < preset.seeds:
            chosen = chosen_configuration(root, method, preset)
            click.echo(f"[orch] {method}: re-training {chosen} on {preset.seeds} fresh seeds")
            campaign.run_all(campaign.plan([(seeds_dir(root, method),
                                             lambda: seeds_settings(preset, method, root, chosen, given))]),
                              resume_command)
