"""`orch report` / `orch compare`, --seeds and --objective, from small real sweeps of two methods
logged to a real MLflow tracking server (read back through its REST API)."""
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import FAST
from headless_chromium import find_or_install_chromium, inspect_page
from orchestrator.records import parquet
from orchestrator.report import draw as figures
from orchestrator.cli import main
from orchestrator.report.pareto import pareto_front

# The sanity measurements run on every trial; a few points and queries keep them quick.
SMALL = (*FAST, "--set", "eval_sanity_examples=32", "--set", "eval_sanity_queries=50", "--epochs", "1")
STANDARD = ("standard", "--trials", "2", "--seeds", "2", "--name", "std")  # 2 configs x 2 seeds
ER = ("er-classifier", "--trials", "2", "--objective", "clean+robust", "--name", "er")
LATENT_EXAMPLES = 120
RUN_TAGS = ("method", "dataset", "model", "sweep", "objective", "eval_profile")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, local artifact root)."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job workers: starts faster
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/mlflow.db", "--artifacts-destination", str(folder / "artifacts")],
        stdout=open(folder / "server.log", "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, server, folder / "server.log")
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        server.wait(timeout=30)


def _wait_healthy(uri: str, server: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {timeout_s} s")


def _sweep(results: Path, uri: str, args: tuple[str, ...]) -> str:
    result = CliRunner().invoke(main, ["sweep", *args, "--results-dir", str(results),
                                       "--tracking-uri", uri, *SMALL])
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.output


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def standard_sweep(results, mlflow_server):
    return results / "std", _sweep(results, mlflow_server, STANDARD)


@pytest.fixture(scope="module")
def er_sweep(results, mlflow_server):
    return results / "er", _sweep(results, mlflow_server, ER)


@pytest.fixture(scope="module")
def report_dir(standard_sweep, er_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    result = CliRunner().invoke(main, ["report", str(standard_sweep[0]), str(er_sweep[0]), "-o", str(out),
                                       "--latent-examples", str(LATENT_EXAMPLES)])
    assert result.exit_code == 0, result.output + str(result.exception)
    return out


def _finished(sweep_dir: Path) -> pd.DataFrame:
    trials = pd.read_parquet(sweep_dir / "trials.parquet")
    return trials[trials["status"] == "FINISHED"]


def _best_config(trials: pd.DataFrame) -> str:
    """The documented choice: highest mean validation robust accuracy under the strong attack;
    ties go to the higher mean validation clean accuracy, then to the smaller config_id."""
    means = trials.groupby("config_id")[["val_strong_robust_acc", "val_clean_acc"]].mean().reset_index()
    return means.sort_values(["val_strong_robust_acc", "val_clean_acc", "config_id"],
                             ascending=[False, False, True])["config_id"].iloc[0]


def brute_force_front(points: list[tuple[float, float]]) -> set[int]:
    """i is on the front iff no j is >= in both and > in one (both maximised); NaN never is."""
    def dominated(i: int) -> bool:
        return any(a >= points[i][0] and b >= points[i][1] and (a > points[i][0] or b > points[i][1])
                   for a, b in points)
    return {i for i, p in enumerate(points) if not any(math.isnan(v) for v in p) and not dominated(i)}


# --- figures ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_every_figure_is_a_valid_image_of_the_expected_size(report_dir):
    panels = {"robust_vs_eps": 1, "clean_vs_robust": 2, "hp_effects": len(figures.HP_EFFECTS),
              "importances": 2, "latent_tsne": 4}  # 2 methods; 2 studies; clean + adversarial each
    for name, n in panels.items():
        with Image.open(report_dir / f"{name}.png") as image:
            image.verify()
        with Image.open(report_dir / f"{name}.png") as image:
            assert image.size == figures.size_px(name, n), name
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
            assert len(colours) > 20, f"{name}.png looks blank"
        pdf = (report_dir / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF") and b"/Type /Page" in pdf, name


@pytest.mark.integration
def test_latent_parquet_has_the_papers_analyses_of_each_best_trial(report_dir, standard_sweep, er_sweep):
    latent = pd.read_parquet(report_dir / "latent.parquet")
    assert sorted(latent["method"]) == ["er-classifier", "standard"]
    for row in latent.to_dict("records"):
        sweep_dir = standard_sweep[0] if row["method"] == "standard" else er_sweep[0]
        trials = _finished(sweep_dir)
        # The analysed trial: the best configuration by mean validation robust accuracy, and its
        # best seed by the same measure.
        best_config = _best_config(trials)
        replicates = trials[trials["config_id"] == best_config]
        best_trial = replicates.sort_values(["val_strong_robust_acc", "val_clean_acc", "trial_id"],
                                            ascending=[False, False, True])["trial_id"].iloc[0]
        assert row["trial_id"] == best_trial
        assert row["eps"] == pytest.approx(trials["target_eps"].iloc[0])
        assert row["n_examples"] == LATENT_EXAMPLES
        assert row["sensitivity_median"] > 0 and row["sensitivity_std"] >= 0
        assert 0 <= row["knn_clean_acc"] <= 1 and 0 <= row["knn_adv_acc"] <= 1
        assert math.isnan(row["separation_ratio"]) or row["separation_ratio"] > 0
        assert len(row["tsne_x"]) == len(row["tsne_y"]) == 2 * LATENT_EXAMPLES
        assert sum(row["tsne_adversarial"]) == LATENT_EXAMPLES


# --- Pareto fronts ---------------------------------------------------------------------------

def test_pareto_front_matches_brute_force_on_random_points_with_ties():
    rng = random.Random(0)
    for _ in range(300):
        grid = rng.choice([3, 5, 100])  # coarse grids make ties and duplicates common
        points = [(rng.randrange(grid) / grid, rng.randrange(grid) / grid) for _ in range(rng.randrange(1, 25))]
        if rng.random() < 0.2:
            points.append((float("nan"), 0.5))
        assert set(pareto_front(points)) == brute_force_front(points), points


@pytest.mark.integration
def test_report_pareto_front_matches_brute_force_on_the_sweeps(report_dir, standard_sweep, er_sweep):
    flagged = pd.read_parquet(report_dir / "pareto.parquet")
    for sweep_dir in (standard_sweep[0], er_sweep[0]):
        trials = _finished(sweep_dir).reset_index(drop=True)
        points = list(zip(trials["clean_acc"], trials["robust_acc"]))
        expected = {trials["trial_id"][i] for i in brute_force_front(points)}
        mine = flagged[flagged["sweep"] == sweep_dir.name]
        assert set(mine["trial_id"]) == set(trials["trial_id"])
        assert set(mine[mine["pareto"]]["trial_id"]) == expected


@pytest.mark.integration
def test_clean_robust_search_keeps_the_validation_pareto_front(er_sweep):
    """--objective clean+robust: Optuna's study is multi-objective and its Pareto front is the
    brute-force front of the (val clean, strong val robust) pairs the trials reported."""
    sweep_dir, output = er_sweep
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    study = optuna.load_study(study_name="er", storage=storage)
    assert len(study.directions) == 2
    trials = _finished(sweep_dir).reset_index(drop=True)
    points = list(zip(trials["val_clean_acc"], trials["val_strong_robust_acc"]))
    expected = {points[i] for i in brute_force_front(points)}
    assert {tuple(t.values) for t in study.best_trials} == expected
    assert "Pareto front on validation" in output


# --- seeds -----------------------------------------------------------------------------------

@pytest.mark.integration
def test_seeds_train_every_configuration_with_each_seed(standard_sweep):
    sweep_dir, output = standard_sweep
    trials = _finished(sweep_dir)
    assert len(trials) == 4 and trials["config_id"].nunique() == 2
    for _, group in trials.groupby("config_id"):
        assert sorted(group["seed"]) == [0, 1]
        hps = group[[c for c in group if c.startswith("hp_")]]
        assert len(hps.drop_duplicates()) == 1  # the replicates share every hyperparameter
    # Optuna saw one trial per configuration, valued at the mean over its seeds.
    study = optuna.load_study(study_name="std", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    means = sorted(trials.groupby("config_id")["val_strong_robust_acc"].mean())
    assert sorted(t.values[0] for t in study.trials) == pytest.approx(means)
    assert "mean ± std over seeds" in output


# --- ranking ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_compare_ranks_each_methods_best_validation_config_by_test_robustness(standard_sweep, er_sweep):
    result = CliRunner().invoke(main, ["compare", str(standard_sweep[0]), str(er_sweep[0])])
    assert result.exit_code == 0, result.output
    rows = {}
    for sweep_dir in (standard_sweep[0], er_sweep[0]):
        trials = _finished(sweep_dir)
        rows[trials["method"].iloc[0]] = trials.groupby("config_id")["robust_acc"].mean()[_best_config(trials)]
    lines = result.output.splitlines()
    ranked = [line.split()[1] for line in lines[2:4]]
    assert sorted(ranked) == sorted(rows) and [rows[m] for m in ranked] == sorted(rows.values(), reverse=True)
    for method, robust in rows.items():
        line = next(line for line in lines if line.split()[1:2] == [method])
        assert f"{robust:.3f}" in line
    assert "AutoAttack" in lines[1] and "trusted" in lines[1]


# --- HTML in a real browser -------------------------------------------------------------------

@pytest.mark.integration
def test_html_report_loads_every_image_without_console_errors(report_dir, tmp_path):
    chromium = find_or_install_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    page = inspect_page(chromium, (report_dir / "report.html").resolve().as_uri(), tmp_path / "page.png")
    assert page.errors == []
    pngs = sorted(p.stem for p in report_dir.glob("*.png"))
    assert sorted(i["alt"] for i in page.images) == pngs
    for image in page.images:
        assert image["complete"] and image["naturalWidth"] > 0
        assert (image["naturalWidth"], image["naturalHeight"]) == figures.png_size(report_dir / f"{image['alt']}.png")
    with Image.open(tmp_path / "page.png") as shot:
        assert shot.size[1] > 1500  # the whole page: five sections of figures and tables


# --- MLflow, read back through the tracking server's REST API --------------------------------

def _rest(uri: str, endpoint: str, body: dict | None = None, query: str = "") -> dict:
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/{endpoint}{query}",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.integration
def test_mlflow_child_runs_are_nested_under_their_parent(mlflow_server, standard_sweep, er_sweep):
    experiment = _rest(mlflow_server, "experiments/get-by-name", query="?experiment_name=orch-digits")
    runs = _rest(mlflow_server, "runs/search", {"experiment_ids": [experiment["experiment"]["experiment_id"]],
                                                "max_results": 1000})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    parents = {t["sweep"]: run_id for run_id, t in tags.items() if "mlflow.parentRunId" not in t}
    assert set(parents) == {"std", "er"}
    expected = {"std": ("standard", "robust", 4), "er": ("er-classifier", "clean+robust", 2)}
    for sweep, (method, objective, n_children) in expected.items():
        children = [run_id for run_id, t in tags.items() if t.get("mlflow.parentRunId") == parents[sweep]]
        assert len(children) == n_children
        for run_id in [parents[sweep], *children]:
            assert {k: tags[run_id][k] for k in RUN_TAGS} == {
                "method": method, "dataset": "digits", "model": "small-cnn", "sweep": sweep,
                "objective": objective, "eval_profile": "quick"}
        for run_id in children:
            assert {"curve.png", "curve.json"} <= _artifacts(mlflow_server, run_id)
            (run,) = [r for r in runs if r["info"]["run_id"] == run_id]
            assert len(run["outputs"]["model_outputs"]) == 1  # the checkpoint, a logged model
            png = _download(mlflow_server, run_id, "curve.png")
            assert png.startswith(b"\x89PNG")
            metrics = {m["key"] for r in runs if r["info"]["run_id"] == run_id for m in r["data"]["metrics"]}
            assert {"curve/worst", "curve/pgd", "test_clean_acc", "test_robust_acc"} <= metrics
        assert {"curves.parquet", "trials.parquet", "summary"} <= _artifacts(mlflow_server, parents[sweep])
        assert {"summary/robust_vs_eps.png", "summary/clean_vs_robust.png"} <= _artifacts(
            mlflow_server, parents[sweep], "summary")


def _artifacts(uri: str, run_id: str, path: str = "") -> set[str]:
    query = f"?run_id={run_id}" + (f"&path={path}" if path else "")
    return {f["path"] for f in _rest(uri, "artifacts/list", query=query).get("files", [])}


def _download(uri: str, run_id: str, path: str) -> bytes:
    with urllib.request.urlopen(f"{uri}/get-artifact?run_id={run_id}&path={path}", timeout=30) as response:
        return response.read()


def test_a_flat_curve_is_flagged_in_the_ranking(tmp_path):
    """A constant classifier: no attack changes a prediction, so robust = clean at every ε."""
    for method, accuracies in (("flat", [0.1, 0.1, 0.1]), ("real", [0.9, 0.4, 0.05])):
        identity = {"sweep": method, "method": method, "trial_id": "t0", "mlflow_run_id": None,
                    "dataset": "digits", "model": "small-cnn", "seed": 0, "hp_lr": 0.001}
        points = [("clean", 0.0, accuracies[0]), ("worst", 0.1, accuracies[1]), ("worst", 0.3, accuracies[2])]
        (tmp_path / method).mkdir()
        parquet.upsert(tmp_path / method / "curves.parquet", [
            {**identity, "attack": a, "norm": "Linf", "eps": e, "steps": 0, "restarts": 0, "n_examples": 10,
             "accuracy": acc} for a, e, acc in points], "curves")
        parquet.upsert(tmp_path / method / "trials.parquet", [{
            **identity, "status": "FINISHED", "clean_acc": accuracies[0], "robust_acc": accuracies[2],
            "val_robust_acc": accuracies[2], "target_eps": 0.3}], "trials")
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "flat"), str(tmp_path / "real")])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines()[2:]}
    assert "FLAT CURVE" in rows["flat"] and "FLAT CURVE" not in rows["real"]


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["report", "no-such-sweep", "-o", "OUT"],
    ["report", ".", "-o", "OUT"],  # a folder, but not a sweep
    ["report", "SWEEP", "-o", "OUT", "--latent-examples", "-1"],
    ["report", "SWEEP", "-o", "FILE"],
    ["compare", "no-such-sweep"],
])
def test_report_and_compare_reject_bad_input_and_write_nothing(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "SWEEP").mkdir()
    (tmp_path / "FILE").write_text("not a folder")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.output.startswith("orch: error: ") and len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "SWEEP"]
    assert (tmp_path / "FILE").read_text() == "not a folder" and not any((tmp_path / "SWEEP").iterdir())


@pytest.mark.parametrize("flag, value", [("--objective", "accuracy"), ("--seeds", "0")])
def test_sweep_rejects_bad_objective_and_seeds(flag, value, tmp_path):
    result = CliRunner().invoke(main, ["sweep", "standard", flag, value, "--results-dir", str(tmp_path),
                                       "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 2 and result.output.startswith(f"orch: error: {flag}")
    assert list(tmp_path.iterdir()) == []


def test_a_figure_saved_twice_is_the_same_bytes(tmp_path):
    """A regenerated figure that did not change must not differ in git (a PDF's creation date would)."""
    def draw_into(folder: Path) -> list[bytes]:
        fig = figures.plt.figure()
        fig.gca().plot([0, 1], [1, 0])
        return [path.read_bytes() for path in figures.save(fig, folder, "line")]

    first = draw_into(tmp_path / "a")
    time.sleep(1.1)  # the creation date's resolution is a second
    assert draw_into(tmp_path / "b") == first


def test_clean_vs_worst_zooms_on_the_clean_intervals_and_names_each_point():
    """Trained models' clean accuracies lie a few points apart: on a 0-1 axis their error bars
    would be one blur. The x axis spans every clean interval (no more than a margin beyond), the
    worst-case axis keeps 0-1, and each point carries its method's name."""
    from orchestrator.report.leaderboard import Estimate
    points = {"madry": (Estimate(0.965, 0.947, 0.980), Estimate(0.757, 0.719, 0.797), False),
              "afd": (Estimate(0.973, 0.959, 0.985), Estimate(0.436, 0.332, 0.549), True)}
    fig = figures.clean_vs_worst_bars(points)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert 0.93 < low < 0.947 and 0.985 < high < 1.0
    assert ax.get_ylim() == (-0.02, 1.02)
    assert {t.get_text() for t in ax.texts} == {"madry", "afd"}
    figures.plt.close(fig)
