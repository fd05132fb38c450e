"""Several sweeps run one after another under one folder: `orch reproduce` (each method's paper
defaults) and `orch benchmark` (each method searched, then re-trained on fresh seeds). Every
sweep is checked before the first trial runs; a sweep that finished is not run again on
--resume, and one that was interrupted continues from its checkpoints."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import click

from orchestrator import options
from orchestrator.options import BadInput, check_name
from orchestrator.records import parquet
from orchestrator.report.reproduce import Preset
from orchestrator.sweep.request import SweepRequest, build_request
from orchestrator.sweep.resume import SWEEP_FILE, load_sweep
from orchestrator.sweep.run import run_or_exit


def campaign_root(results_dir: str, name: str | None, default_name: str, resume: bool) -> Path:
    """The campaign's folder: new unless --resume, which needs --name and an existing folder."""
    if resume and not name:
        raise BadInput("--resume needs the --name of the run to continue")
    if name:
        check_name("--name", name)
    root = Path(results_dir) / (name or f"{default_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if root.exists() and not resume:
        raise BadInput(f"{root} already exists; pick another --name (or continue it with --resume)")
    if resume and not root.is_dir():
        raise BadInput(f"--resume: {root} does not exist")
    return root


def finished_trials(sweep_dir: Path) -> int:
    path = sweep_dir / parquet.TRIALS_FILE
    return sum(r["status"] == "FINISHED" for r in parquet.read_rows(path)) if path.is_file() else 0


def plan(sweeps: Iterable[tuple[Path, Callable[[], dict[str, Any]]]]) -> list[SweepRequest]:
    """The checked request of every (sweep folder, its settings) to run: a folder that holds a
    sweep already is continued with its saved settings."""
    requests = []
    for sweep_dir, settings_of in sweeps:
        saved = None
        settings = settings_of()
        if sweep_dir.exists() and not (sweep_dir / SWEEP_FILE).exists():
            # Killed while setting up (before sweep.json, so before Tune saved any state or a
            # trial ran): nothing to continue; run_sweep reuses its parent run.
            shutil.rmtree(sweep_dir)
        if sweep_dir.exists():
            try:
                saved = load_sweep(sweep_dir)
            except ValueError as error:
                raise BadInput(str(error)) from None
            settings = {**saved.settings, "results_dir": str(sweep_dir.parent)}
        requests.append(build_request(settings, saved))
    return requests


def run_all(requests: list[SweepRequest], resume_command: str) -> None:
    """Runs each sweep; interrupted, says `resume_command` (the campaign's, not the sweep's)."""
    for request in requests:
        click.echo(f"[orch] {request.name}: {request.resources_line}")
        run_or_exit(request, resume_command)


def sweep_settings(preset: Preset, method: str, results_dir: Path, *, model: str | None,
                   epochs: int | None, sets: Sequence[str], **given: Any) -> dict[str, Any]:
    """The options of the `orch sweep` that reproduces `method` (one configuration: the paper's
    defaults): every sweep option at its default, the preset's values, then `given` (the
    reproduce command's own values of sweep options: --data-dir, --seeds, --gpus, ...)."""
    return {**options.defaults(), "method": method, "dataset": preset.dataset,
            "model": model or preset.model, "trials": 1, "epochs": epochs or preset.epochs,
            "name": method, "results_dir": str(results_dir), "scheduler": "fifo",
            "eval_examples": preset.eval_examples,
            "sets": [*(f"{k}={v}" for k, v in preset.sets.items()), *sets], **given}
