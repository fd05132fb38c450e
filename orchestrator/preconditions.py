"""File-system preconditions, checked before anything is created: the folders a sweep will write
into, the data it will read, and what `orch evaluate` was pointed at. Checking writes nothing;
in particular reading a run never creates a tracking store."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

RUN_ID = re.compile(r"[0-9a-f]{32}")


class PreconditionFailed(ValueError):
    """A path that cannot serve its purpose; the message names the flag and the path."""


def check_output_folder(flag: str, folder: str) -> None:
    """`folder` is, or can be created as, a writable folder."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise PreconditionFailed(f"{flag} {folder} is a file, not a folder")
    ancestor = next(p for p in (path, *path.parents) if p.exists())  # "." for a relative path
    if not ancestor.is_dir():
        raise PreconditionFailed(f"{flag} {folder}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK):
        raise PreconditionFailed(f"{flag} {folder}: folder {ancestor} is not writable")


def check_data_dir(dataset: str, data_dir: str | None) -> None:
    """npz reads one file; the torchvision datasets read (and download into) a folder."""
    if data_dir is None:
        return
    path = Path(data_dir)
    if not path.exists():
        raise PreconditionFailed(f"--data-dir {data_dir} does not exist")
    if dataset == "npz" and not path.is_file():
        raise PreconditionFailed(f"--data-dir {data_dir} is a folder; --dataset npz reads one .npz file")
    if dataset != "npz" and not path.is_dir():
        raise PreconditionFailed(f"--data-dir {data_dir} is a file; --dataset {dataset} reads a folder "
                                 f"(use --dataset npz for an .npz file)")


def check_local_storage(storage: str | None) -> None:
    """A local --storage (a path or file://) must be a folder orch can write; URIs are the
    cluster's business (checked against its nodes later)."""
    if storage and ("://" not in storage or storage.startswith("file://")):
        check_output_folder("--storage", storage.removeprefix("file://"))


@dataclass(frozen=True)
class EvaluateTarget:
    """What `orch evaluate TARGET` reads: a checkpoint path, or a run id in a tracking store."""

    path: Path | None = None
    run_id: str | None = None


def evaluate_target(target: str, tracking_uri: str) -> EvaluateTarget:
    """A path that exists is a checkpoint; a string that looks like a path is a missing one;
    anything else is a run id, looked up only in a store that already exists."""
    if Path(target).exists():
        return EvaluateTarget(path=Path(target))
    if "/" in target or os.sep in target:
        raise PreconditionFailed(f"no checkpoint at {target} (read as a path, since it contains '/')")
    if not RUN_ID.fullmatch(target):
        raise PreconditionFailed(f"{target} is neither an existing checkpoint path nor an MLflow run id "
                                 f"(32 hex digits)")
    missing = _missing_store(tracking_uri)
    if missing:
        raise PreconditionFailed(f"read {target} as an MLflow run id, but {missing}")
    return EvaluateTarget(run_id=target)


def _missing_store(tracking_uri: str) -> str | None:
    """Why a local tracking store does not exist yet (MLflow would create it on first use)."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return None if db.is_file() else f"there is no tracking store at {tracking_uri} ({db} does not exist)"
    if parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme else tracking_uri)
        return None if folder.is_dir() else f"there is no tracking store at {tracking_uri}"
    return None  # a server answers for itself
