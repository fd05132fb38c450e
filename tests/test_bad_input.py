"""The "Bad input" table of docs/bad-input.md, run: every refused input exits 2 with exactly the table's one
line on stderr and writes nothing (no sweep folder, no mlflow.db, no mlruns/, no file a crafted
checkpoint or Tune state asks to create). The table is parsed from docs/bad-input.md, so it cannot drift
from the code."""
import os
import pathlib
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.sweep.space import space_values, string_choices, value_problem
from trainables.config import TrialConfig
from search_spaces import SPACES, get_space

BAD_INPUT = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
MARKER = "PWNED"  # what the crafted checkpoint creates if it is ever unpickled


def readme_cases() -> list[tuple[str, str]]:
    """(command, message) of each row of the table under "# Bad input"."""
    section = BAD_INPUT.read_text().split("# Bad input", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`orch " in line]
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    return [(command.strip("`"), message.strip("`")) for _, command, _, message in cells]


class CraftedPickle:
    """Unpickling this calls Path.touch: what an attacker's `os.system` would be."""

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(MARKER),)


def _npz(path: Path, x_train=None, y_train=None, x_test=None, y_test=None) -> None:
    """A small valid dataset (10 classes, 8x8 uint8) with some arrays replaced."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    labels = np.arange(40) % 10
    np.savez(path, x_train=images if x_train is None else x_train, y_train=labels if y_train is None else y_train,
             x_test=images[:10] if x_test is None else x_test, y_test=labels[:10] if y_test is None else y_test)


def write_shared_sweep(folder: Path) -> Path:
    """Sweep `shared` under results/ (default --storage), saved as if its driver had died, whose
    Tune state someone else could have replaced: its tuner.pkl is the crafted pickle and
    group-writable; the folders from --storage down are not, whatever the umask. Returns Tune's
    experiment folder."""
    from orchestrator.sweep.resume import SavedSweep, save_sweep

    sweep = folder / "results" / "shared"
    experiment = sweep / "ray" / "shared"
    experiment.mkdir(parents=True)
    for storage_folder in (sweep / "ray", experiment):
        storage_folder.chmod(0o755)
    save_sweep(sweep, SavedSweep({"method": "madry"}, "0", "0" * 32))
    (experiment / "tuner.pkl").write_bytes(pickle.dumps(CraftedPickle()))
    (experiment / "tuner.pkl").chmod(0o664)
    return experiment


def write_fixtures(folder: Path) -> None:
    """The bad files the table's commands name, built in the test's working folder."""
    labels = np.arange(40) % 10
    _npz(folder / "labels-255.npz", y_train=np.where(labels == 3, 255, labels))
    _npz(folder / "labels-negative.npz", y_train=np.where(labels == 3, -1, labels))
    _npz(folder / "labels-float.npz", y_train=labels.astype(np.float32))
    _npz(folder / "one-class.npz", y_train=np.zeros(40, np.int64), y_test=np.zeros(10, np.int64))
    _npz(folder / "test-only-class.npz", y_test=np.full(10, 10))
    pixels = np.full((40, 8, 8), 0.5, np.float32)
    pixels[3, 2, 2] = np.nan
    _npz(folder / "nan-pixels.npz", x_train=pixels)
    _npz(folder / "pixels-0-255-float.npz", x_train=np.full((40, 8, 8), 255.0, np.float32))
    _npz(folder / "unpaired.npz", y_train=labels[:39])
    _npz(folder / "empty-test.npz", x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, np.int64))
    _npz(folder / "wrong-shape.npz", x_train=np.zeros((40, 64), np.uint8))
    _npz(folder / "test-shape.npz", x_test=np.zeros((10, 9, 9), np.uint8))
    np.savez(folder / "missing-array.npz", x_train=np.zeros((4, 8, 8), np.uint8))
    whole = (folder / "labels-255.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    np.savez(folder / "pickled.npz", x_train=np.array([{}], dtype=object), y_train=labels,
             x_test=labels, y_test=labels)
    (folder / "crafted").mkdir()
    torch.save({"config": CraftedPickle()}, folder / "crafted" / "state.pt")
    (folder / "random").mkdir()
    (folder / "random" / "state.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "empty-folder").mkdir()
    (folder / "a-file").write_text("not a folder\n")
    write_shared_sweep(folder)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def bad_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_fixtures(tmp_path)
    return tmp_path


CASES = readme_cases()


def test_the_table_lists_the_issues_cases():
    commands = " ".join(command for command, _ in CASES)
    for needed in ("crafted", "random", "evaluate /nonexistent", "truncated.npz", "labels-255.npz",
                   "labels-negative.npz", "nan-pixels.npz", "lambda=-1", "embed_dim=0", "--results-dir a-file",
                   "--resume"):
        assert needed in commands, needed


@pytest.mark.parametrize("command,message", CASES, ids=[c for c, _ in CASES])
def test_bad_input_row_exits_2_with_its_one_line_and_writes_nothing(command, message, bad_files):
    before = listing(bad_files)
    args = shlex.split(command)
    assert args[0] == "orch"
    result = CliRunner().invoke(main, args[1:])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert result.stderr.splitlines() == [message]
    assert listing(bad_files) == before  # no results/, mlflow.db, mlruns/, nor the marker


def test_the_crafted_checkpoint_runs_code_when_unpickled(tmp_path, monkeypatch):
    """The fixture is a real attack: a plain pickle load creates the marker file."""
    monkeypatch.chdir(tmp_path)
    write_fixtures(tmp_path)
    torch.load(tmp_path / "crafted" / "state.pt", weights_only=False)
    assert (tmp_path / MARKER).exists()


def test_the_crafted_tune_state_runs_code_when_tune_restores_it(tmp_path, monkeypatch):
    """The --resume fixture is a real attack: Tune's own restore creates the marker file."""
    from ray import tune

    monkeypatch.chdir(tmp_path)
    experiment = write_shared_sweep(tmp_path)
    with pytest.raises(Exception):  # the unpickled "state" is not a dict
        tune.Tuner.restore(str(experiment), lambda config: None)
    assert (tmp_path / MARKER).exists()


def _untrusted(storage: Path, name: str) -> str:
    from orchestrator.sweep.preconditions import PreconditionFailed, check_tune_state_trusted

    with pytest.raises(PreconditionFailed) as refusal:
        check_tune_state_trusted(str(storage), name)
    return str(refusal.value)


def test_resume_refuses_tune_state_under_a_folder_others_may_write(tmp_path, monkeypatch):
    """A folder between --storage and the state counts: whoever writes it can swap the state."""
    monkeypatch.chdir(tmp_path)
    experiment = write_shared_sweep(tmp_path)
    (experiment / "tuner.pkl").chmod(0o644)
    experiment.parent.chmod(0o777)
    assert _untrusted(experiment.parent, "shared") == (
        "--resume: results/shared/ray is writable by group or others, so someone else could make "
        "orch run code when Tune unpickles its saved state; if you trust it: chmod go-w results/shared/ray")


def test_resume_names_the_first_of_many_untrusted_paths_and_the_fix_for_all(tmp_path, monkeypatch):
    """A umask of 002 leaves every file and folder group-writable: one line, one command."""
    monkeypatch.chdir(tmp_path)
    experiment = write_shared_sweep(tmp_path)
    (experiment / "trial_0").mkdir()
    (experiment / "trial_0" / "error.pkl").write_bytes(pickle.dumps(None))
    (experiment / "experiment_state-2026.json").write_text("{}")
    for path in (experiment.parent, experiment, *experiment.rglob("*")):
        path.chmod(path.stat().st_mode | 0o020)
    assert _untrusted(experiment.parent, "shared") == (
        "--resume: results/shared/ray is writable by group or others (and 5 more paths under "
        "results/shared/ray), so someone else could make orch run code when Tune unpickles its "
        "saved state; if you trust it: chmod -R go-w results/shared/ray")


def test_resume_names_a_broken_symlink_in_the_tune_state_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    experiment = write_shared_sweep(tmp_path)
    (experiment / "tuner.pkl").chmod(0o644)
    (experiment / "searcher-state-2026.pkl").symlink_to(tmp_path / "gone.pkl")
    assert _untrusted(experiment.parent, "shared") == (
        f"--resume: results/shared/ray/shared/searcher-state-2026.pkl is a broken symbolic link (to "
        f"{tmp_path / 'gone.pkl'}); Tune cannot restore the sweep from it: rm "
        "results/shared/ray/shared/searcher-state-2026.pkl, or start the sweep again under a new --name")


def test_a_resumed_sweeps_local_ray_keeps_its_temp_folder_private(tmp_path):
    """Tune stages the restored state under Ray's temp folder, which Ray makes writable by all:
    a resumed sweep's local Ray gets a folder only its user can open."""
    import ray

    from orchestrator.cluster.connect import disconnect, start_local

    start_local(0, private=True)
    try:
        session = Path(ray._private.worker.global_worker.node.get_session_dir_path())
        private = next(p for p in session.parents if p.name.startswith("orch-ray-"))
        assert private.stat().st_mode & 0o077 == 0, "others can reach Ray's temp folder"
    finally:
        disconnect()


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_resume_refuses_tune_state_another_user_owns(tmp_path):
    experiment = write_shared_sweep(tmp_path)
    state = experiment / "searcher-state-2026.pkl"
    state.write_bytes(pickle.dumps(None))
    os.chown(state, 4242, 4242)
    (experiment / "tuner.pkl").chmod(0o644)
    assert _untrusted(experiment.parent, "shared") == (
        f"--resume: {state} is owned by uid 4242, not by you, so someone else could make orch run "
        f"code when Tune unpickles its saved state; if you trust it: chown {os.getuid()} {state}")


def test_resume_accepts_tune_state_only_its_owner_may_write(tmp_path):
    from orchestrator.sweep.preconditions import check_tune_state_trusted

    experiment = write_shared_sweep(tmp_path)
    (experiment / "tuner.pkl").chmod(0o644)
    check_tune_state_trusted(str(experiment.parent), "shared")
    check_tune_state_trusted("s3://bucket/orch", "shared")  # the bucket's policy guards it
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("method", sorted(SPACES))
@pytest.mark.parametrize("family", ["mnist-like", "cifar-like"])
def test_every_search_space_bound_and_paper_default_passes_the_checks(method, family):
    """What Optuna can hand a trial must pass the rules `--set` is held to (and vice versa: a
    bound the rules refuse is a bug in the space or in the rules)."""
    defaults = TrialConfig(method=method).to_flat()
    choices = string_choices(method, family)
    searched = [(key, value) for key, values in space_values(method, family).items() for value in values]
    offered = searched + list(get_space(method).paper_defaults(family).items())
    refused = [(key, value) for key, value in offered
               if value_problem(key, value, defaults.get(key), choices.get(key))]
    assert offered and refused == []


def test_a_crafted_checkpoint_in_an_mlflow_run_is_refused_by_run_id(tmp_path, monkeypatch):
    """The same refusal when the checkpoint comes from a (shared, unauthenticated) tracking store:
    a real SQLite store whose run holds the crafted state.pt as its `checkpoint` artifact."""
    from mlflow.tracking import MlflowClient

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=(store / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    write_fixtures(tmp_path)
    client.log_artifacts(run_id, str(tmp_path / "crafted"), artifact_path="checkpoint")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(main, ["evaluate", run_id, "--tracking-uri", uri])
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"orch: error: cannot load '{run_id}': ") and f"runs:/{run_id}/checkpoint/state.pt asks to run Python code" in line
    assert not (tmp_path / MARKER).exists() and list(work.iterdir()) == []


def test_report_notes_a_crafted_best_checkpoint_instead_of_loading_it(tmp_path, monkeypatch):
    """`orch report`'s latent analysis reads each method's best checkpoint: a crafted one is
    skipped with a note, and nothing in it runs."""
    import pandas as pd

    from orchestrator.report.latent import latent_rows
    from orchestrator.report.load import Sweeps

    monkeypatch.chdir(tmp_path)
    write_fixtures(tmp_path)
    trials = pd.DataFrame([{"sweep": "s", "trial_id": "t0", "checkpoint_uri": str(tmp_path / "crafted"),
                            "target_eps": 0.3}])
    best = pd.DataFrame([{"sweep": "s", "best_trial": "t0", "method": "madry", "config_id": 0, "config": ""}])
    rows, notes = latent_rows(Sweeps([tmp_path], trials, pd.DataFrame()), best, n_examples=8)
    assert rows == [] and len(notes) == 1
    assert "asks to run Python code" in notes[0] and "no latent analysis" in notes[0]
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("images", [
    np.zeros((12, 8, 8), np.uint8),  # NHW
    np.zeros((12, 8, 8, 3), np.uint8),  # NHWC
    np.full((12, 1, 8, 8), 0.5, np.float32),  # NCHW, float in [0, 1]
], ids=["NHW-uint8", "NHWC-uint8", "NCHW-float"])
def test_the_data_checks_accept_every_documented_layout(images):
    from trainables.data_checks import check_arrays

    labels = (np.arange(12) % 3).reshape(-1, 1)  # one label per image, as a column
    arrays = {"x_train": images, "y_train": labels, "x_test": images[:3], "y_test": labels[:3, 0]}
    assert check_arrays("mine.npz", arrays) == 3
