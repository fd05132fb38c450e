"""`orch benchmark` end to end on a tiny digits budget (2 methods x 2 trials x 2 seeds x 1 epoch)
through real Ray, a real SQLite MLflow store and real Parquet: killed (SIGKILL) after the first
method's search and resumed without duplicating a run or a row; the leaderboard is computed from
the per-example records (an identical copy of madry differs by 0 and is not distinguishable; a
planted better copy is better); bad input is one line, exit 2, nothing written."""
from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from cluster_helpers import Orch
from orchestrator.cli import main

pytestmark = pytest.mark.integration

TINY = ["digits", "--methods", "madry,trades", "--trials", "2", "--seeds", "2", "--epochs", "1",
        "--test-examples", "40", "--name", "tiny", "--results-dir", "results"]


def _orch(tmp_path, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return Orch(["benchmark", *TINY, "--tracking-uri", f"sqlite:///{tmp_path}/m.db", *extra], env, tmp_path)


def _leaderboard(*args):
    return CliRunner().invoke(main, ["leaderboard", *map(str, args)])


def test_benchmark_resumes_after_a_kill_and_ranks_from_its_records(tmp_path):
    root = tmp_path / "results" / "tiny"
    first = _orch(tmp_path)
    first.lines_until(lambda line: "re-training" in line and "madry" in line, timeout_s=900)
    first.kill()  # SIGKILL mid-benchmark: madry's search ended, its seeds had just started
    resumed = _orch(tmp_path, "--resume")
    assert resumed.finish(timeout_s=1500) == 0, resumed.output[-3000:]

    digests = set()
    for method in ("madry", "trades"):
        search = pq.read_table(root / f"{method}-search" / "trials.parquet").to_pylist()
        assert len(search) == 2 and len({r["trial_id"] for r in search}) == 2
        assert all(r["clean_acc"] is None for r in search)  # the search never read the test split
        assert {r["eval_profile"] for r in search} == {"none"}  # and says so
        seeds = pq.read_table(root / f"{method}-seeds" / "trials.parquet").to_pylist()
        assert sorted(r["seed"] for r in seeds if r["status"] == "FINISHED") == [1, 2]
        # What a merge checks: every finished trial, search and seeds, names the same data.
        digests.update(r["data_digest"] for r in search + seeds if r["status"] == "FINISHED")
        records = pq.read_table(root / f"{method}-seeds" / "examples.parquet").to_pandas()
        assert sorted(records["index"].unique()) == list(range(40))
        assert not records.duplicated(["trial_id", "attack", "path", "eps", "index"]).any()
        # The seeds' finished attacks are kept beside the sweeps, where --continue-from finds them.
        assert any((root / f"{method}-evaluations").rglob("*.pt"))
        assert not (root / f"{method}-seeds" / "evaluations").exists()
    assert len(digests) == 1 and re.fullmatch("[0-9a-f]{16}", digests.pop()), digests
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    experiment = client.get_experiment_by_name("orch-digits")
    runs = client.search_runs([experiment.experiment_id])
    names = [r.info.run_name for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(names) == sorted(["madry-search", "madry-seeds", "trades-search", "trades-seeds", "tiny"])
    # What MLflow's table shows as each run's profile is the evaluation it ran: none for the
    # search (validation only), standard for the fresh seeds.
    profiles = {(r.data.tags["sweep"].rsplit("-", 1)[-1], r.data.tags["eval_profile"], r.data.params.get("eval_profile"))
                for r in runs if "trial_id" in r.data.tags}
    assert profiles == {("search", "none", "none"), ("seeds", "standard", "standard")}, profiles
    children_of_tiny = [r for r in runs if r.data.tags.get("orch.role") == "benchmark-method"]
    assert sorted(r.data.tags["method"] for r in children_of_tiny) == ["madry", "trades"]
    # The MLflow table's verdict is the leaderboard's, flags and all.
    verdicts = {r["method"]: r["verdict"] for r in csv.DictReader((root / "benchmark.csv").open())}
    assert {r.data.tags["method"]: r.data.tags["verdict"] for r in children_of_tiny} == verdicts
    assert verdicts["madry"] == "reference"
    table = (root / "benchmark.md").read_text()
    assert "| madry |" in table and "| trades |" in table and "reference" in table
    # The search's cost is known although --cpus-per-trial was left to its default.
    costs = {r["method"]: r["search_core_s"] for r in csv.DictReader((root / "benchmark.csv").open())}
    assert all(float(costs[method]) > 0 for method in ("madry", "trades")), costs
    # Each fresh seed's own numbers, one row per (method, seed) that trained.
    trained = pq.read_table(root / "madry-seeds" / "trials.parquet").to_pandas()
    by_seed = [r for r in csv.DictReader((root / "benchmark_seeds.csv").open()) if r["method"] == "madry"]
    assert sorted(int(r["seed"]) for r in by_seed) == sorted(trained["seed"]), by_seed
    assert all(0 <= float(r["worst"]) <= float(r["clean"]) <= 1 for r in by_seed), by_seed

    # The leaderboard comes from the records: a copy of madry's is madry again.
    twin = tmp_path / "twin"
    shutil.copytree(root / "madry-seeds", twin / "twin-seeds")
    for name in ("examples.parquet", "trials.parquet"):
        frame = pq.read_table(twin / "twin-seeds" / name).to_pandas()
        frame["method"] = "twin"
        frame.to_parquet(twin / "twin-seeds" / name, index=False)
    same = _leaderboard(root / "madry-seeds", twin, "-o", tmp_path / "same")
    assert same.exit_code == 0, same.output
    twin_row = next(line for line in same.output.splitlines() if line.startswith("| twin |"))
    assert "+0.0 [+0.0, +0.0]" in twin_row and "not distinguishable" in twin_row

    # A planted better copy: every point it got wrong under attack is now right.
    frame = pq.read_table(twin / "twin-seeds" / "examples.parquet").to_pandas()
    frame["correct"] = True
    frame.to_parquet(twin / "twin-seeds" / "examples.parquet", index=False)
    better = _leaderboard(root / "madry-seeds", twin, "-o", tmp_path / "better")
    assert "| better |" in next(line for line in better.output.splitlines() if line.startswith("| twin |"))


@pytest.mark.parametrize("args,message", [
    (["nope"], "orch: error: unknown preset 'nope'; known: digits, mnist-cpu, mnist, cifar10"),
    (["digits", "--methods", "madry,nine"], "orch: error: --methods: unknown nine; known: "),
    (["digits", "--seeds", "0"], "orch: error: --seeds must be at least 1 (got 0)"),
    (["digits", "--trials", "0"], "orch: error: --trials must be at least 1 (got 0)"),
    (["digits", "--continue-from", "nowhere"], "orch: error: --continue-from nowhere: no such folder"),
])
def test_benchmark_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["benchmark", *args])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("points_b,digest_b,message", [
    (range(3, 8), "aaaa", "the records are on different test points"),
    # The same dataset name and indices, other examples (another npz file): only the digest tells.
    (range(5), "bbbb", "the records were measured on different data (content digests aaaa, bbbb)"),
])
def test_leaderboard_refuses_records_on_different_test_points_or_data(points_b, digest_b, message, tmp_path):
    """Two benchmark folders measured on different points or data cannot be merged: one line, exit 2."""
    import pandas as pd

    for name, points, digest in (("a", range(5), "aaaa"), ("b", points_b, digest_b)):
        sweep = tmp_path / name / f"{name}-seeds"
        sweep.mkdir(parents=True)
        pd.DataFrame([{"sweep": f"{name}-seeds", "method": name, "trial_id": "t", "status": "FINISHED",
                       "target_eps": 0.1, "dataset": "npz", "data_digest": digest, "seed": 1,
                       "hp_lr": 0.001}]).to_parquet(sweep / "trials.parquet")
        pd.DataFrame([{"sweep": f"{name}-seeds", "method": name, "trial_id": "t", "config_id": "c", "seed": 1,
                       "attack": "clean", "path": "predict", "eps": 0.0, "index": i, "correct": True}
                      for i in points]).to_parquet(sweep / "examples.parquet")
    result = _leaderboard(tmp_path / "a", tmp_path / "b", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("orch: error: " + message)
    assert not (tmp_path / "out").exists()


def test_an_interrupted_benchmark_says_the_command_that_continues_all_of_it():
    """Not the interrupted stage's `orch sweep --resume`, which would leave the other stages undone."""
    from pathlib import Path

    from orchestrator.cli import benchmark, campaign_resume_command

    args = ["mnist-cpu", "--methods", "madry", "--data-dir", "mnist 10k.npz", "--cpus-per-trial", "1"]
    with benchmark.make_context("benchmark", args) as ctx:
        command = ctx.invoke(lambda: campaign_resume_command(Path("results/mnist-cpu-madry")))
    assert command == ("orch benchmark mnist-cpu --methods madry --data-dir 'mnist 10k.npz' "
                       "--cpus-per-trial 1 --name mnist-cpu-madry --resume")


RECORDS = {preset: Path(__file__).resolve().parents[1] / "docs" / "benchmark" / preset / "records"
           for preset in ("digits", "mnist-cpu")}


def test_a_search_that_ended_elsewhere_is_adopted_not_run_again(tmp_path):
    """--continue-from with the committed mnist-cpu records: madry's search (ended there) is
    copied and its chosen configuration is the one its records name; tla, not searched in the
    folder given, is left to search."""
    from orchestrator.report.benchmark import BENCHMARKS
    from orchestrator.sweep import benchmark as stages

    root, preset, source = tmp_path / "continued", BENCHMARKS["mnist-cpu"], tmp_path / "records"
    shutil.copytree(RECORDS["mnist-cpu"] / "madry-search", source / "madry-search")  # tla: not searched there
    adopted = stages.adopt_searches(root, preset, ["madry", "tla"], {}, source)
    assert adopted == ["madry"]
    assert stages.search_ended(root, "madry", preset.trials) and not stages.search_ended(root, "tla", preset.trials)
    chosen = stages.chosen_configuration(root, "madry", preset)
    assert {k: chosen[k] for k in ("embed_dim", "lr", "train_eps")} == {"embed_dim": 16, "lr": 0.001, "train_eps": 0.3}
    assert stages.adopt_searches(root, preset, ["madry"], {}, source) == []  # already its own


def test_the_attacks_of_an_evaluation_cut_short_elsewhere_are_carried_over(tmp_path):
    """--continue-from copies METHOD-evaluations/ (kept by a benchmark stopped mid-evaluation on
    another machine) file by file, never over what this benchmark kept itself."""
    from orchestrator.report.benchmark import BENCHMARKS
    from orchestrator.sweep import benchmark as stages

    root, preset, source = tmp_path / "here", BENCHMARKS["mnist-cpu"], tmp_path / "records"
    for name, text in (("0123/001-pgd-predict-0.1.pt", "there"), ("0123/002-cw-predict-0.1.pt", "there"),
                       ("4567/001-pgd-predict-0.1.pt", "there")):
        (source / "tla-evaluations" / name).parent.mkdir(parents=True, exist_ok=True)
        (source / "tla-evaluations" / name).write_text(text)
    (root / "tla-evaluations" / "0123").mkdir(parents=True)
    (root / "tla-evaluations" / "0123" / "002-cw-predict-0.1.pt").write_text("here")
    assert stages.adopt_evaluations(root, preset, ["madry", "tla"], source) == {"tla": 2}
    kept = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.pt")}
    assert kept == {"tla-evaluations/0123/001-pgd-predict-0.1.pt": "there",
                    "tla-evaluations/0123/002-cw-predict-0.1.pt": "here",
                    "tla-evaluations/4567/001-pgd-predict-0.1.pt": "there"}


def test_a_search_run_with_other_settings_is_refused_in_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["benchmark", "digits", "--methods", "madry", "--epochs", "5",
                                       "--continue-from", str(RECORDS["digits"])])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("orch: error: --continue-from: ") and "epochs=10" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preset", sorted(RECORDS))
def test_committed_search_records_say_they_never_read_the_test_split(preset):
    """What a user queries in the committed records: a search trial has no test numbers and its
    eval_profile says so (none), as a run of today's orch writes it; a seed trial ran the
    standard evaluation."""
    sweeps = [f for f in RECORDS[preset].iterdir() if f.name.endswith(("-search", "-seeds"))]  # not METHOD-evaluations
    assert sweeps
    for folder in sorted(sweeps):
        trials = pq.read_table(folder / "trials.parquet").to_pylist()
        searched = folder.name.endswith("-search")
        assert {r["eval_profile"] for r in trials} == ({"none"} if searched else {"standard"}), folder
        assert all((r["clean_acc"] is None) == searched for r in trials if r["status"] == "FINISHED"), folder


def test_leaderboard_compares_with_the_reference_asked_for(tmp_path):
    """`--reference trades` on the committed digits records: every difference is to trades, so
    madry's is the negation of trades' difference to madry in the committed leaderboard (the same
    pairs of outcomes, the other way round); a method that was not run is one line, exit 2."""
    records = Path(__file__).parent.parent / "docs" / "benchmark" / "digits" / "records"
    result = _leaderboard(records, "-o", tmp_path / "out", "--reference", "trades")
    assert result.exit_code == 0, result.output
    assert "| vs trades (worst case) |" in result.output and "vs trades: the paired difference" in result.output
    mine = {r["method"]: r for r in csv.DictReader((tmp_path / "out" / "benchmark.csv").open())}
    committed = {r["method"]: r for r in csv.DictReader((records.parent / "benchmark.csv").open())}
    assert mine["trades"]["verdict"] == "reference"
    assert float(mine["madry"]["diff_vs_trades_mean"]) == pytest.approx(-float(committed["trades"]["diff_vs_madry_mean"]))
    assert mine["madry"]["verdict"] == "worse"  # trades is better than madry on digits, by the committed board
    wrong = _leaderboard(records, "-o", tmp_path / "wrong", "--reference", "nope")
    assert wrong.exit_code == 2 and wrong.stderr.startswith("orch: error: --reference nope: not among the merged methods")
    assert not (tmp_path / "wrong").exists()


def test_each_seed_says_which_epoch_was_evaluated(tmp_path):
    """On the committed mnist-cpu records, where early stopping took an early epoch for some seeds
    (adr, atld): each seed's row says the epoch its trial evaluated, of the epochs it trained, so a
    low clean accuracy there is read as an early epoch, not as noise."""
    import pandas as pd

    records = Path(__file__).parent.parent / "docs" / "benchmark" / "mnist-cpu" / "records"
    result = _leaderboard(records, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    shown = pd.read_csv(tmp_path / "out" / "benchmark_seeds.csv")
    trained = pd.concat(pd.read_parquet(path) for path in records.glob("*-seeds/trials.parquet"))
    trained = trained[trained["status"] == "FINISHED"]
    expected = {(m, s): (e, n) for m, s, e, n in trained[["method", "seed", "evaluated_epoch", "epochs_completed"]].itertuples(index=False)}
    assert {(m, s): (e, n) for m, s, e, n in shown[["method", "seed", "evaluated_epoch", "epochs"]].itertuples(index=False)} == expected
    atld = next(line for line in result.output.splitlines() if line.startswith("| atld | 1, 2, 3 |"))
    seeds = trained[trained["method"] == "atld"].sort_values("seed")
    assert atld.endswith(" | " + " / ".join(f"{e:.0f}" for e in seeds["evaluated_epoch"]) + " of 20 |")


def test_a_merged_leaderboard_is_logged_to_mlflow_once_per_reference(tmp_path):
    """`orch leaderboard --tracking-uri` on the committed digits records: a parent run with one
    child per method whose verdict and numbers are the leaderboard's; logging again adds no run;
    the same records against trades are another parent, whose differences are named after trades
    (a run never holds a difference to madry beside a verdict against trades)."""
    records = Path(__file__).parent.parent / "docs" / "benchmark" / "digits" / "records"
    uri = f"sqlite:///{tmp_path}/m.db"
    for reference in ("madry", "madry", "trades"):
        result = _leaderboard(records, "-o", tmp_path / reference, "--tracking-uri", uri, "--name", "digits-board",
                              "--reference", reference)
        assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("orch-digits").experiment_id
    parents = {run.data.tags["orch.reference"]: run for run in
               client.search_runs([experiment], "tags.`orch.benchmark` = 'digits-board'")}
    assert set(parents) == {"madry", "trades"}
    for reference, parent in parents.items():
        board = {r["method"]: r for r in csv.DictReader((tmp_path / reference / "benchmark.csv").open())}
        children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(run.data.tags["method"] for run in children) == sorted(board)
        for run in children:
            row = board[run.data.tags["method"]]
            assert run.data.tags["verdict"] == row["verdict"]
            assert run.data.metrics["worst_acc"] == pytest.approx(float(row["worst_mean"]))
            named = {m for m in run.data.metrics if m.startswith("worst_vs_")}
            assert named == (set() if row["verdict"] == "reference" else
                             {f"worst_vs_{reference}", f"worst_vs_{reference}_low", f"worst_vs_{reference}_high"})
    assert "benchmark.md" in {a.path for a in client.list_artifacts(parents["madry"].info.run_id)}

