"""cluster.yaml must pass the schema shipped inside the ray package, and `orch validate-cluster`
must say what is wrong with a broken one."""
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from ray.autoscaler._private.util import prepare_config, validate_config

from orchestrator.cli import main

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"


def _config():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_is_valid_for_the_ray_launcher():
    config = _config()
    validate_config(prepare_config(config))  # prepare: fills the defaults, as `ray up` does
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] == 8 and workers["min_workers"] == 0 < workers["max_workers"]
    assert workers["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}
    assert any("pip install" in c and "/home/ubuntu/orch" in c for c in config["setup_commands"])


def test_token_authentication_stays_on_and_mlflow_stays_private():
    config = _config()
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
              if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    [mlflow] = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    assert "--host $(hostname -I" in mlflow and "0.0.0.0" not in mlflow


def test_no_credentials_in_the_file():
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"(?i)aws_(access|secret)|secret_access_key|AKIA[0-9A-Z]{16}|password|ssh_private_key", text)


def test_orch_validate_cluster_accepts_cluster_yaml():
    result = CliRunner().invoke(main, ["validate-cluster", str(CLUSTER_YAML)])
    assert result.exit_code == 0, result.output
    assert "valid Ray cluster config 'orch' (aws/us-west-2)" in result.output
    assert "gpu_worker 0-4 x {CPU: 96, GPU: 8}; up to 32 GPUs" in result.output


def _drop_head_type(config):
    del config["head_node_type"]


def _fractional_gpus(config):
    config["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5


def _unknown_key(config):
    config["setup_comands"] = ["echo typo"]


@pytest.mark.parametrize("break_it, expected", [
    (_drop_head_type, "`head_node_type` must be one of `available_node_types`."),
    (_fractional_gpus, "available_node_types.gpu_worker.resources.GPU: 0.5 is not of type 'integer'"),
    (_unknown_key, "(top level): Additional properties are not allowed ('setup_comands' was unexpected)"),
])
def test_orch_validate_cluster_names_what_is_wrong(tmp_path, break_it, expected):
    config = _config()
    break_it(config)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["validate-cluster", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"orch: error: {path}: {expected}"
    assert result.stdout == ""


def test_orch_validate_cluster_reports_unreadable_files(tmp_path):
    (tmp_path / "bad.yaml").write_text("cluster_name: [unclosed\n")
    result = CliRunner().invoke(main, ["validate-cluster", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "not valid YAML" in result.stderr
    missing = CliRunner().invoke(main, ["validate-cluster", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
