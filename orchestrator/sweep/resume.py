"""Continuing a sweep whose driver was interrupted or died (`orch sweep ... --name X --resume`).

What a sweep needs to continue lives in its folder: `sweep.json` (the command's settings and its
MLflow parent run), `optuna.db` (the Optuna study, also for reports) and the Parquet files; Tune's
own state lives in the experiment folder on --storage. Tune restores the trials and the searcher;
this module restores the rest and afterwards reconciles the records, because the driver can die
between Tune's last snapshot and the MLflow/Parquet/Optuna writes that followed it:
- a trial started after the snapshot is unknown to the restored Tune ("lost"; only a driver that
  died at once leaves one, see interrupt.py): its MLflow run is tagged with what happened and
  deleted (recoverable with `mlflow runs restore`), its Optuna trial marked FAIL;
- a run whose final status never reached MLflow gets the status of its Parquet row;
- Parquet rows written while MLflow was unreachable get their run id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from orchestrator.records import parquet
from orchestrator.tracking.runs import child_runs

SWEEP_FILE = "sweep.json"
STUDY_FILE = "optuna.db"
# Flags that may differ when resuming: where things are, not what the sweep is.
RESUME_MAY_CHANGE = {"resume", "name", "results_dir", "address"}
# Why a run is deleted: a sweep stopped by a signal snapshots every trial first (interrupt.py),
# so only a driver that died at once (SIGKILL, out of memory, a lost machine) leaves such runs.
LOST = ("Tune's saved state holds no such trial: the trial started after Tune's last snapshot and "
        "the driver was killed before the next one (SIGKILL, out of memory, a lost machine); "
        "its training is lost and Optuna's next suggestion ran in its place")
# A trial the scheduler stopped early ended normally: FINISHED, with its tag orch.status=STOPPED;
# MLflow's KILLED is kept for runs a user interrupted.
MLFLOW_STATUS = {"FINISHED": "FINISHED", "FAILED": "FAILED", "STOPPED": "FINISHED"}


@dataclass(frozen=True)
class SavedSweep:
    settings: dict[str, Any]  # the command's options, as given (a resume resolves them again)
    experiment_id: str
    parent_run_id: str
    cpus_per_trial: int | None = None  # the cores each trial held, as resolved (costs in core-seconds)


def study_uri(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"


def save_sweep(sweep_dir: Path, saved: SavedSweep) -> None:
    path = sweep_dir / SWEEP_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved.__dict__, indent=1, sort_keys=True))
    tmp.replace(path)


def load_sweep(sweep_dir: Path) -> SavedSweep:
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        raise ValueError(f"--resume: {sweep_dir} holds no sweep to resume (no {SWEEP_FILE})")
    return SavedSweep(**json.loads(path.read_text()))


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples -> lists, as sweep.json holds them


def resumed_settings(given: dict[str, Any], explicit: set[str], saved: SavedSweep,
                     flags: dict[str, str]) -> dict[str, Any]:
    """The saved settings, with `address` (a cluster can move) from the command line. Any other
    flag given explicitly must agree with the saved one: a resumed sweep is the same sweep.
    `flags` maps a setting to the flag that gives it (eval_profile -> --eval)."""
    if given["method"] != saved.settings["method"]:
        raise ValueError(f"--resume: sweep {given['name']} is a {saved.settings['method']} sweep, "
                         f"not {given['method']}")
    for key in sorted(explicit - RESUME_MAY_CHANGE):
        if key in saved.settings and _plain(given[key]) != saved.settings[key]:
            flag = flags[key]
            raise ValueError(f"--resume continues sweep {given['name']} with its saved settings: "
                             f"{flag} {_plain(given[key])} differs from its {saved.settings[key]} "
                             "(leave the flag out)")
    known = {k: v for k, v in saved.settings.items() if k in given}  # options this orch still has
    settings = {**given, **known, "resume": True, "name": given["name"], "results_dir": given["results_dir"]}
    if given.get("address") or "address" not in saved.settings:
        settings["address"] = given.get("address")
    return settings


def reconcile(client, experiment_id: str, parent_run_id: str, sweep_dir: Path) -> list[str]:
    """After a sweep completed (first run or resumed): make MLflow, Parquet and Optuna agree with
    Tune's trials, i.e. the rows of trials.parquet. Returns what it changed, for the log."""
    trials_path = sweep_dir / parquet.TRIALS_FILE
    rows = {r["trial_id"]: r for r in parquet.read_rows(trials_path)} if trials_path.exists() else {}
    runs = child_runs(client, experiment_id, parent_run_id)
    notes = []
    for trial_id, run in runs.items():
        if trial_id not in rows:
            client.set_tag(run.info.run_id, "orch.lost", LOST)
            client.set_terminated(run.info.run_id, "KILLED")
            client.delete_run(run.info.run_id)
            notes.append(f"deleted MLflow run {run.info.run_id} of lost trial {trial_id}")
        elif run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, MLFLOW_STATUS[rows[trial_id]["status"]])
            notes.append(f"closed MLflow run {run.info.run_id} as {rows[trial_id]['status']}")
    missing = {t: runs[t].info.run_id for t, r in rows.items() if not r["mlflow_run_id"] and t in runs}
    if missing:
        _fill_run_ids(sweep_dir, missing)
        notes.append(f"filled the MLflow run id of {len(missing)} Parquet trial rows")
    lost = fail_lost_optuna_trials(sweep_dir)
    if lost:
        notes.append(f"marked {lost} lost Optuna trial(s) FAIL")
    return notes


def _fill_run_ids(sweep_dir: Path, run_ids: dict[str, str]) -> None:
    for name, kind in ((parquet.TRIALS_FILE, "trials"), (parquet.CURVES_FILE, "curves")):
        path = sweep_dir / name
        if not path.exists():
            continue
        rows = [{**r, "mlflow_run_id": run_ids.get(r["trial_id"], r["mlflow_run_id"])}
                for r in parquet.read_rows(path) if r["trial_id"] in run_ids]
        if rows:
            parquet.upsert(path, rows, kind)


def fail_lost_optuna_trials(sweep_dir: Path) -> int:
    """Once every Tune trial has ended, an Optuna trial still RUNNING was asked for by a driver
    that died before Tune recorded it: no one will ever tell its value."""
    if not (sweep_dir / STUDY_FILE).exists():
        return 0
    storage = optuna.storages.RDBStorage(study_uri(sweep_dir))
    lost = 0
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            lost += 1
    return lost
