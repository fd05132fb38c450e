"""--eval standard through a real sweep, and `orch evaluate` on the finished trial."""
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from conftest import FAST
from trainables.sanity import BALL_TOL, CHECKS, LOGITS_RTOL, MEASURE_OF, ZERO_GRAD_MAX_FRACTION
from orchestrator.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def madry_standard(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    uri = f"sqlite:///{tmp}/mlflow.db"
    result = CliRunner().invoke(main, [
        "sweep", "madry", "--trials", "1", "--epochs", "2", "--name", "std",
        "--eval-examples", "64", "--results-dir", str(tmp / "results"), "--tracking-uri", uri, *FAST,
        "--eval", "standard", "--set", "eval_sanity_examples=32", "--set", "eval_sanity_queries=100"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return tmp / "results" / "std", uri, result


def test_standard_profile_writes_autoattack_rows_and_sanity_columns(madry_standard):
    sweep_dir, _, _ = madry_standard
    curves = pq.read_table(sweep_dir / "curves.parquet").to_pylist()
    attacks = {r["attack"] for r in curves}
    assert {"autoattack", "cw", "pgd", "fgsm", "worst"} <= attacks
    autoattack = [r for r in curves if r["attack"] == "autoattack"]
    assert autoattack and all(r["path"] == "predict" and r["n_examples"] == 64 for r in autoattack)
    (trial,) = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    for check in (*CHECKS, "trusted"):
        assert f"sanity_{check}" in trial
    assert isinstance(trial["sanity_trusted"], bool)
    # Beside three flags, the value each judged: the flag is that value against its threshold.
    limits = {"deterministic_logits": LOGITS_RTOL, "no_zero_gradients": ZERO_GRAD_MAX_FRACTION, "adv_in_ball": BALL_TOL}
    for check, name in MEASURE_OF.items():
        assert trial[f"sanity_{check}"] == (trial[f"measured_{name}"] <= limits[check]), (check, trial)
    # AutoAttack runs at the target ε; its ε = 0 row is the clean accuracy (the curve's origin).
    (at_target,) = [r for r in autoattack if r["eps"] == pytest.approx(trial["target_eps"])]
    assert trial["autoattack_acc"] == pytest.approx(at_target["accuracy"])
    # The reported robust accuracy is the worst case, so never above AutoAttack's.
    assert trial["robust_acc"] <= trial["autoattack_acc"] + 1e-9


def test_evaluate_reruns_a_finished_trial_from_its_run_id(madry_standard):
    sweep_dir, uri, _ = madry_standard
    (trial,) = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    result = CliRunner().invoke(main, ["evaluate", trial["mlflow_run_id"], "--eval", "quick",
                                       "--eval-examples", "64", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output + str(result.exception)
    metrics = MlflowClient(uri).get_run(trial["mlflow_run_id"]).data.metrics
    # Same weights, same points, same seeded attack: the quick re-run reproduces the clean accuracy.
    assert metrics["eval/quick/clean_acc"] == pytest.approx(trial["clean_acc"])
    assert 0.0 <= metrics["eval/quick/robust_acc"] <= metrics["eval/quick/clean_acc"]


def test_evaluate_reads_a_checkpoint_folder_and_rejects_unknown_targets(madry_standard, tmp_path):
    sweep_dir, uri, _ = madry_standard
    (trial,) = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    result = CliRunner().invoke(main, ["evaluate", trial["checkpoint_uri"], "--eval", "quick",
                                       "--eval-examples", "32", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "sanity: unbounded_eps_breaks_all=" in result.output
    missing = CliRunner().invoke(main, ["evaluate", "0123456789abcdef", "--tracking-uri", uri])
    assert missing.exit_code == 2 and missing.stderr.startswith("orch: error: cannot load")
