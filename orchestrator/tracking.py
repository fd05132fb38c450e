"""Checking a tracking URI before anything runs, and the MLflow experiment/parent run."""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse


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
