"""Every bad input: one line on stderr, exit code 2, nothing written, Ray never started."""
import socket

import pytest
from click.testing import CliRunner

from orchestrator.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_INPUTS = {
    "unknown method": (["sweep", "er-clasifier"], "unknown method 'er-clasifier'; known: "),
    "unknown dataset": (["sweep", "madry", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    "malformed --set": (["sweep", "madry", "--set", "lr"], "is not KEY=VALUE"),
    "unknown hyperparameter": (["sweep", "er-classifier", "--set", "lamda=0.1"], "unknown hyperparameter"),
    "eps above 1": (["sweep", "madry", "--set", "train_eps=8"], "outside [0, 1]"),
    "eps below 0": (["sweep", "madry", "--set", "target_eps=-1/255"], "outside [0, 1]"),
    "zero trials": (["sweep", "madry", "--trials", "0"], "--trials must be at least 1"),
    "missing data dir": (["sweep", "madry", "--data-dir", "no/such/dir"], "does not exist"),
    "npz without file": (["sweep", "madry", "--dataset", "npz"], "--data-dir"),
    "unreachable server": (["sweep", "madry", "--tracking-uri", f"http://127.0.0.1:{_closed_port()}"],
                           "cannot reach MLflow tracking server"),
    "sqlite in missing folder": (["sweep", "madry", "--tracking-uri", "sqlite:///nowhere/x/mlflow.db"],
                                 "does not exist"),
    "bad knob value": (["sweep", "er-classifier", "--set", "prior=laplace"], "prior='laplace'"),
    "more gpus than the machine": (["sweep", "madry", "--gpus", "2"], "--gpus 2 exceeds the 0 GPUs of this machine"),
    "fractional gpus above one": (["sweep", "madry", "--gpus-per-trial", "1.5"], "above 1 it must be a whole number"),
    "more cpus than the machine": (["sweep", "madry", "--cpus-per-trial", "4096"], "the largest node of this machine has"),
    "unknown scheduler": (["sweep", "madry", "--scheduler", "hyperband"], "--scheduler 'hyperband': choose one of fifo, asha"),
    "negative max failures": (["sweep", "madry", "--max-failures", "-1"], "--max-failures must be at least 0"),
    "negative checkpoint interval": (["sweep", "madry", "--checkpoint-every", "-5"],
                                     "--checkpoint-every must be at least 0 seconds"),
    "resume without name": (["sweep", "madry", "--resume"], "--resume needs the --name"),
    # A name is a folder and a string in MLflow's search filters, where a quote would end it.
    "name with a quote": (["sweep", "madry", "--name", "it's"], "must be a plain folder name"),
    "name with a path": (["sweep", "madry", "--name", "a/b"], "must be a plain folder name"),
    "benchmark name with a backtick": (["benchmark", "digits", "--name", "x`y"], "must be a plain folder name"),
    "leaderboard run name with a quote": (["leaderboard", "records", "-o", "out", "--tracking-uri",
                                           "sqlite:///m.db", "--name", "it's"], "must be a plain folder name"),
    "leaderboard run name without a store": (["leaderboard", "records", "-o", "out", "--name", "board"],
                                             "give --tracking-uri too"),
    "resume of nothing": (["sweep", "madry", "--resume", "--name", "nope"], "holds no sweep to resume"),
    "unreachable cluster": (["sweep", "madry", "--address", f"127.0.0.1:{_closed_port()}"],
                            "cannot reach a Ray cluster at 127.0.0.1:"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args, expected = BAD_INPUTS[case]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("orch: error: "), result.stderr
    assert expected in lines[0]
    assert list(tmp_path.iterdir()) == []  # no results/, no mlflow.db, no mlruns/


def test_known_methods_are_listed_on_unknown_method(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["sweep", "nope"])
    for method in ("standard", "madry", "er-classifier"):
        assert method in result.stderr


def test_offline_torchvision_dataset_points_to_data_dir_and_digits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    # No network here (and none needed to test the message): point torchvision at a dead proxy.
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_closed_port()}")
    result = CliRunner().invoke(main, ["sweep", "madry", "--dataset", "cifar10", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert "--data-dir" in result.stderr and "--dataset digits" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_methods_command_lists_spaces_and_defaults():
    result = CliRunner().invoke(main, ["methods"])
    assert result.exit_code == 0
    assert "er-classifier" in result.output
    assert "prior: one of gaussian, uniform, cauchy" in result.output
    assert "paper defaults (first trial): lambda=0.015, embed_dim=4" in result.output


def test_resume_refuses_flags_that_change_the_sweep(tmp_path, monkeypatch):
    from orchestrator.sweep.resume import SavedSweep, save_sweep

    monkeypatch.chdir(tmp_path)
    sweep_dir = tmp_path / "results" / "s"
    sweep_dir.mkdir(parents=True)
    save_sweep(sweep_dir, SavedSweep({"method": "madry", "epochs": 3, "trials": 2}, "0", "parent"))
    changed = CliRunner().invoke(main, ["sweep", "madry", "--resume", "--name", "s", "--epochs", "5"])
    assert changed.exit_code == 2
    assert changed.stderr.strip() == ("orch: error: --resume continues sweep s with its saved settings: "
                                      "--epochs 5 differs from its 3 (leave the flag out)")
    # A flag whose setting has another name is named as the user types it.
    save_sweep(sweep_dir, SavedSweep({"method": "madry", "checkpoint_every_s": 10.0}, "0", "parent"))
    renamed = CliRunner().invoke(main, ["sweep", "madry", "--resume", "--name", "s", "--checkpoint-every", "0"])
    assert renamed.exit_code == 2 and "--checkpoint-every 0.0 differs from its 10.0" in renamed.stderr
    other = CliRunner().invoke(main, ["sweep", "er-classifier", "--resume", "--name", "s"])
    assert other.exit_code == 2 and "is a madry sweep, not er-classifier" in other.stderr
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["sweep.json"]
