"""Tune's storage (`--storage`): where trials write checkpoints and where the driver keeps a copy
of the sweep's Parquet files, so that they survive the driver's machine on a cluster."""
from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
from ray import tune

from orchestrator.records import parquet



def is_uri(storage: str) -> bool:
    """s3://, gs://, hdfs:// ... (pyarrow filesystems); file:// and plain paths are local."""
    return "://" in storage and not storage.startswith("file://")


def default_storage(sweep_dir: Path) -> str:
    """`<results-dir>/<name>/ray`: fine on one machine, refused on a multi-node cluster."""
    return str((sweep_dir / "ray").resolve())


def normalise(storage: str) -> str:
    """URIs as given; local paths absolute, since a worker's working directory is not ours."""
    return storage.rstrip("/") if is_uri(storage) else str(Path(storage.removeprefix("file://")).resolve())


def experiment_path(storage: str, name: str) -> str:
    """Tune's experiment folder: what `Tuner.restore` takes."""
    return f"{storage.rstrip('/')}/{name}"


class ParquetMirror(tune.Callback):
    """Copies curves.parquet and trials.parquet into the experiment folder on --storage each
    time a trial ends (after ParquetRecorder wrote them locally). Only used when --storage is
    not the default local folder."""

    def __init__(self, sweep_dir: Path, storage: str, name: str):
        self.sweep_dir = sweep_dir
        self.target = experiment_path(storage, name)

    def _copy(self) -> None:
        filesystem, root = pafs.FileSystem.from_uri(self.target if is_uri(self.target)
                                                    else Path(self.target).as_uri())
        filesystem.create_dir(root, recursive=True)
        for name in (parquet.CURVES_FILE, parquet.TRIALS_FILE):
            source = self.sweep_dir / name
            if source.exists():  # copy, then rename: readers never see half a file
                pafs.copy_files(str(source), f"{root}/{name}.tmp", destination_filesystem=filesystem)
                filesystem.move(f"{root}/{name}.tmp", f"{root}/{name}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._copy()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._copy()

    def on_experiment_end(self, trials, **info):
        self._copy()
