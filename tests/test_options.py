"""Every `orch sweep` option travels from the command line to where it says it lands (a trial
config key or a SweepRequest field), so an option added to `options.SWEEP` but not wired, or
added without an example here, fails this test."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import options
from orchestrator.cli import sweep as sweep_command
from orchestrator.sweep.request import build_request
from trainables.evaluate import PROFILES

MNIST_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k.npz"
# A value other than the default for every option, as typed on the command line. An option that
# cannot be walked offline says why instead.
EXAMPLES = {
    "dataset": ["--dataset", "npz", "--data-dir", str(MNIST_NPZ)],
    "data_dir": ["--dataset", "npz", "--data-dir", "NPZ_RELATIVE"],
    "model": ["--model", "lenet"],
    "trials": ["--trials", "3"],
    "epochs": ["--epochs", "2"],
    "gpus": ["--gpus", "0"],
    "gpus_per_trial": ["--gpus-per-trial", "0.5"],
    "cpus_per_trial": ["--cpus-per-trial", "1"],
    "name": ["--name", "walked"],
    "results_dir": ["--results-dir", "TMP/elsewhere"],
    "surrogate_cache": ["--surrogate-cache", "kept"],
    "evaluations_dir": ["--evaluations-dir", "attacked"],
    "tracking_uri": ["--tracking-uri", "sqlite:///TMP/other.db"],
    "seed": ["--seed", "5"],
    "sets": ["--set", "lr=0.002"],
    "storage": ["--storage", "TMP/storage"],
    "max_failures": ["--max-failures", "2"],
    "checkpoint_every_s": ["--checkpoint-every", "0"],
    "scheduler": ["--scheduler", "asha"],
    "objective": ["--objective", "clean+robust"],
    "seeds": ["--seeds", "2"],
    "eval_profile": ["--eval", "quick"],
    "eval_examples": ["--eval-examples", "50"],
    "compile_model": ["--compile"],
    "final_checkpoint": ["--final-checkpoint", "best"],
}
NOT_WALKED = {"address": "needs a running Ray cluster (tests/test_cluster.py starts one)",
              "resume": "needs a saved sweep (tests/test_interrupt.py resumes one)"}


def test_every_option_has_an_example_or_a_reason():
    assert set(EXAMPLES) | set(NOT_WALKED) == {option.name for option in options.SWEEP}


def test_eval_profiles_agree_with_the_evaluation():
    assert options.EVAL_PROFILES == PROFILES


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_option_lands_where_it_says(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist.npz").symlink_to(MNIST_NPZ)
    args = [a.replace("TMP", str(tmp_path)).replace("NPZ_RELATIVE", "data/mnist.npz") for a in EXAMPLES[name]]
    base_args = ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"] if name != "tracking_uri" else []
    ctx = sweep_command.make_context("sweep", ["standard", *base_args, *args])
    request = build_request({"method": "standard", **ctx.params})
    option = options.BY_NAME[name]
    kind, _, key = option.to.partition(":")
    landed = request.base[key] if kind == "config" else getattr(request, key)
    default = options.defaults()[name]
    assert landed != default, f"{option.flag} {args} did not reach {option.to} (still {landed!r})"
    assert landed == _expected(name, args[-1], tmp_path), f"{option.flag} reached {option.to} as {landed!r}"


def _expected(name: str, typed: str, tmp_path: Path):
    """The value a typed flag must become where it lands."""
    special = {
        "dataset": "npz", "compile_model": True, "sets": {"lr": 0.002},
        "data_dir": str(tmp_path / "data" / "mnist.npz"),  # absolute: trials run elsewhere
        "surrogate_cache": str(tmp_path / "kept"),
        "evaluations_dir": str(tmp_path / "attacked"),  # absolute, like the surrogate's folder
        "results_dir": Path(typed), "storage": typed,
    }
    if name in special:
        return special[name]
    option = options.BY_NAME[name]
    return type(option.default)(typed) if option.default is not None else type_of(name)(typed)


def type_of(name: str):
    return {"gpus": float, "cpus_per_trial": int, "name": str, "tracking_uri": str, "scheduler": str}[name]


def test_every_trial_under_a_results_dir_shares_one_surrogate_folder(tmp_path, monkeypatch):
    """--results-dir (relative, as typed) lands in each trial's config as an absolute folder for
    the transfer surrogate: trials run in their own folders, and a benchmark's methods share it.
    An interrupted final evaluation's attacks are kept in the sweep's own folder."""
    monkeypatch.chdir(tmp_path)
    ctx = sweep_command.make_context("sweep", ["standard", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                                               "--results-dir", "out", "--name", "s1"])
    request = build_request({"method": "standard", **ctx.params})
    assert request.base["eval_surrogate_cache"] == str(tmp_path / "out" / "surrogates")
    assert request.base["eval_progress_dir"] == str(tmp_path / "out" / "s1" / "evaluations")
