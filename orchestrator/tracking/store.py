"""Where MLflow writes: the tracking URI (checked before anything runs, writing nothing), the
store created once, under a lock, and new experiments' artifacts kept beside it.

Creating a SQLite store runs MLflow's schema migrations (alembic); two processes doing that at
once on a new file fail (`table _alembic_tmp_experiments already exists`). Sweeps started together
(a shell loop, a job array) therefore create the store one at a time, under a file lock beside
the database; once its tables exist, MLflow opens it without migrating. Their first runs may
also create the same experiment at once: the loser reads the winner's.

Artifacts: MLflow's default for a database store is `./mlruns` of whatever folder the command
runs from. A new experiment of a SQLite store gets `mlartifacts/<experiment>` next to the
database instead; a tracking server keeps its own artifact root, a folder store its own folder.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient


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


ARTIFACTS_DIR = "mlartifacts"
SQLITE_PREFIX = "sqlite:///"


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a SQLite tracking URI; None for any other store."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(tracking_uri[len(SQLITE_PREFIX):])


def create_store(tracking_uri: str) -> None:
    """Create (migrate) a SQLite store while holding `<db>.lock`; a no-op for other stores and
    for a store that exists."""
    db = sqlite_file(tracking_uri)
    if db is None:
        return
    with FileLock(f"{db}.lock"):
        MlflowClient(tracking_uri).search_experiments(max_results=1)  # opening migrates a new file


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside a SQLite database; None lets the store
    decide (a server's artifact root, a folder store's own folder)."""
    db = sqlite_file(tracking_uri)
    return (db.resolve().parent / ARTIFACTS_DIR / experiment).as_uri() if db is not None else None


def create_experiment(client, tracking_uri: str, name: str) -> str:
    """Create experiment `name` and return its id; if another sweep created it a moment ago,
    return that one's."""
    try:
        return client.create_experiment(name, artifact_location=artifact_location(tracking_uri, name))
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id
