"""File-system preconditions, checked before anything is created: the folders a sweep will write
into, the data it will read, and who could have written the Tune state a `--resume` unpickles
(on --storage, and Ray's staging copy of it). Checking writes nothing."""
from __future__ import annotations

import os
import stat
from pathlib import Path

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


# What Tune (ray/tune 2.60) unpickles when it restores an experiment folder: tuner.pkl
# (Tuner.restore), the newest experiment_state-*.json (each trial is a cloudpickle inside it), and,
# after copying every .json and .pkl of the folder to its staging folder, searcher-state-*.pkl,
# search_gen_state-*.json and callback-states-*.pkl. A trial folder ("*/") gets an error.pkl when
# its trial fails, unpickled for the sweep's results.
TUNE_STATE_GLOBS = ("*.pkl", "*.json", "*/", "*/*.pkl")


def check_tune_state_trusted(storage: str, name: str) -> None:
    """Like ssh's StrictModes, for `--resume` with a local --storage: Tune runs whatever code a
    pickle in its saved state asks for, so each such file, and each folder from --storage down to
    it (whoever can write a folder can swap what is in it), must be owned by this user (or root,
    who can write anything anyway) and writable by no one else. A bucket's policy is its own
    guard (docs/cluster.md: the cluster's role alone may write --storage). Tune restores from a
    staging copy of that state in Ray's temporary folder, which Ray makes writable by everyone:
    a resumed sweep's local Ray therefore gets a private one (cluster.connect.start_local)."""
    if "://" in storage:
        return
    root = Path(storage)
    _refuse_untrusted(root, _tune_state_paths(root, root / name))


def _refuse_untrusted(root: Path, paths: list[Path]) -> None:
    untrusted = [(path, problem) for path in paths if (problem := _write_access_problem(path))]
    if not untrusted:
        return
    path, (problem, command, change) = untrusted[0]
    if command == "rm":  # a dangling link: nothing to trust, nothing Tune could read
        raise PreconditionFailed(f"--resume: {_shown(path)} {problem}; Tune cannot restore the sweep "
                                 f"from it: {command} {_shown(path)}, or start the sweep again under a new --name")
    fix = f"{command} {change} {_shown(path)}"
    if len(untrusted) > 1:  # e.g. a umask of 002 left the whole tree group-writable
        problem += f" (and {len(untrusted) - 1} more paths under {_shown(root)})"
        fix = f"{command} -R {change} {_shown(root)}"
    raise PreconditionFailed(f"--resume: {_shown(path)} {problem}, so someone else could make orch "
                             f"run code when Tune unpickles its saved state; if you trust it: {fix}")


def _tune_state_paths(root: Path, experiment: Path) -> list[Path]:
    """The state files Tune unpickles, the trial folders, and the folders from `root` down to
    them, top first (so the refusal names the folder whose fix matters most)."""
    files = {path for pattern in TUNE_STATE_GLOBS for path in experiment.glob(pattern)}
    folders = {folder for path in files for folder in path.parents if folder.is_relative_to(root)}
    return sorted(files | folders, key=lambda path: (len(path.parts), path))


def _write_access_problem(path: Path) -> tuple[str, str, str] | None:
    """(what is wrong, the command and the change that fix it) when someone besides this user
    may write `path`; for a symbolic link that points nowhere, that it does."""
    if path.is_symlink() and not path.exists():
        return f"is a broken symbolic link (to {os.readlink(path)})", "rm", ""
    info = path.stat()
    if info.st_uid not in (os.getuid(), 0):
        return f"is owned by uid {info.st_uid}, not by you", "chown", str(os.getuid())
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by group or others", "chmod", "go-w"
    return None


def _shown(path: Path) -> Path:
    """`path` as the user likely typed it: relative to the current folder when under it."""
    cwd = Path.cwd()
    return path.relative_to(cwd) if path.is_relative_to(cwd) else path
