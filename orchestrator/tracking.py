"""Checking a tracking URI before anything runs, and what the MLflow experiment and a sweep's
parent run record about the sweep as a whole."""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


# MLflow 3 opens an experiment in its GenAI view (traces) unless the experiment says it holds
# model training; the UI's own "Model training" choice sets this tag to this value.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
SEARCH_SPACE_FILE = "search_space.json"


class TrackingUnreachable(RuntimeError):
    pass


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Raise TrackingUnreachable unless MLflow can write there. Writes nothing."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingUnreachable(f"{health} answered HTTP {response.status}")
        except (urllib.error.URLError, OSError) as error:
            raise TrackingUnreachable(f"cannot reach MLflow tracking server {uri}: {error}") from None
        return
    if parsed.scheme == "sqlite":
        db = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not db:
            raise TrackingUnreachable(f"{uri}: expected sqlite:///path/to/file.db")
        _check_writable_dir(Path(db).parent, uri)
        return
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else uri)
        _check_writable_dir(path if path.exists() else path.parent, uri)
        return
    # Other schemes (databricks, postgresql, ...) are left to MLflow itself.


def _check_writable_dir(folder: Path, uri: str) -> None:
    folder = folder if str(folder) else Path(".")
    if not folder.is_dir():
        raise TrackingUnreachable(f"{uri}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise TrackingUnreachable(f"{uri}: folder {folder} is not writable")


def search_space_record(method: str, family: str, fixed: dict[str, Any],
                        first_points: list[dict[str, Any]], eps_scale: float = 1.0) -> dict[str, Any]:
    """What the sweep searched (search_space.json on the parent run): each dimension the search
    varies, the `--set` constants, and the paper defaults tried first."""
    from orchestrator.search import space_dimensions

    searched = [d for d in space_dimensions(method, family, eps_scale) if d["name"] not in fixed]
    return {"method": method, "family": family, "searched": searched, "fixed": fixed,
            "first_points": first_points}


def parent_params(record: dict[str, Any], base: dict[str, Any], trials: int) -> dict[str, Any]:
    """The parent run's params: `search.<dimension>` describes each searched range; every other
    key holds the value every trial used (settings, `--set` constants). A searched key's default
    is left out: no trial used it."""
    from orchestrator.search import describe_dimension

    searched = {d["name"]: describe_dimension(d) for d in record["searched"]}
    shared = {k: v for k, v in {**base, **record["fixed"]}.items() if k not in searched}
    return {"trials": trials, **shared, **{f"search.{name}": text for name, text in searched.items()}}


def best_trial_record(rows: list[dict[str, Any]], objective: str) -> dict[str, dict[str, Any]] | None:
    """The finished trial with the highest `objective` (what the search maximised) as the
    parent's best.* tags (its ids and hyperparameters: tags, since a resumed sweep may find
    another best) and metrics; None when no trial finished."""
    finished = [r for r in rows if r["status"] == "FINISHED" and r.get(objective) is not None]
    if not finished:
        return None
    best = max(finished, key=lambda r: r[objective])
    hparams = {f"best.{k.removeprefix('hp_')}": str(v) for k, v in best.items()
               if k.startswith("hp_") and v is not None}
    return {
        "tags": {"best.trial_id": best["trial_id"], "best.run_id": best["mlflow_run_id"] or "",
                 "best.config_id": best.get("config_id") or "", **hparams},
        "metrics": {f"best.{name}": best[column] for name, column in (
            (objective, objective), ("test_robust_acc", "robust_acc"), ("test_clean_acc", "clean_acc"))
            if best.get(column) is not None},
    }
