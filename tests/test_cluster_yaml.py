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


AWS_RESOURCES = CLUSTER_YAML.parent / "cluster-aws.yaml"


def test_nodes_use_a_security_group_and_least_privilege_profiles_from_cluster_aws_yaml():
    nodes = _config()["available_node_types"]
    resources = yaml.safe_load(AWS_RESOURCES.read_text())["Resources"]
    profiles = {r["Properties"]["InstanceProfileName"]: r["Properties"]["Roles"][0]["Ref"]
                for r in resources.values() if r["Type"] == "AWS::IAM::InstanceProfile"}
    assert nodes["head"]["node_config"]["IamInstanceProfile"] == {"Name": "orch-head"}
    assert nodes["gpu_worker"]["node_config"]["IamInstanceProfile"] == {"Name": "orch-worker"}
    assert set(profiles) == {"orch-head", "orch-worker"}
    assert all(n["node_config"]["SecurityGroupIds"] for n in nodes.values())

    group = resources["ClusterGroup"]["Properties"]
    [ssh] = group["SecurityGroupIngress"]  # from outside: SSH only, from the CIDR the user sets
    assert (ssh["FromPort"], ssh["ToPort"], ssh["CidrIp"]) == (22, 22, {"Ref": "SshCidr"})
    [members] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    assert members["SourceSecurityGroupId"] == members["GroupId"] == {"Fn::GetAtt": ["ClusterGroup", "GroupId"]}

    statements = _permissions(resources)
    assert not [a for s in statements for a in _actions(s) if a.endswith("*")]  # no ec2:*, s3:*
    s3 = [s for s in statements if any(a.startswith("s3:") for a in _actions(s))]
    assert sorted(s["Resource"]["Fn::Sub"] for s in s3) == ["arn:aws:s3:::${Bucket}", "arn:aws:s3:::${Bucket}/*"]
    [terminate] = [s for s in statements if s["Action"] == "ec2:TerminateInstances"]
    assert terminate["Condition"] == {"StringEquals": {"ec2:ResourceTag/ray-cluster-name": _config()["cluster_name"]}}


def _permissions(resources):
    """Every Allow statement of the template's policies (not the roles' trust policies)."""
    documents = [r["Properties"]["PolicyDocument"] for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    documents += [p["PolicyDocument"] for r in resources.values() if r["Type"] == "AWS::IAM::Role"
                  for p in r["Properties"].get("Policies", [])]
    return [s for d in documents for s in d["Statement"]]


def _actions(statement):
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


def _ssh_from_anywhere(config):
    config["provider"]["security_group"] = {"GroupName": "open", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}


def _ray_default_group(config):
    del config["available_node_types"]["gpu_worker"]["node_config"]["SecurityGroupIds"]


def _ray_default_role(config):
    del config["available_node_types"]["head"]["node_config"]["IamInstanceProfile"]


@pytest.mark.parametrize("open_it, expected", [
    (_ssh_from_anywhere, "provider.security_group.IpPermissions: SSH (port 22) is open to 0.0.0.0/0"),
    (_ray_default_group, "available_node_types.gpu_worker.node_config: no SecurityGroupIds, so Ray creates "
                         "its default security group, with SSH open to 0.0.0.0/0"),
    (_ray_default_role, "available_node_types.head.node_config: no IamInstanceProfile, so Ray's default "
                        "applies (on the head: EC2-full and S3-full access)"),
])
def test_orch_validate_cluster_warns_about_what_is_left_open(tmp_path, open_it, expected):
    config = _config()
    for node_type in config["available_node_types"].values():  # as a user fills it in
        node_type["node_config"]["SecurityGroupIds"] = ["sg-0123456789abcdef0"]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    filled = CliRunner().invoke(main, ["validate-cluster", str(path)])
    assert filled.exit_code == 0 and filled.stderr == "", filled.stderr
    open_it(config)
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["validate-cluster", str(path)])
    assert result.exit_code == 0 and "valid Ray cluster config" in result.stdout
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"orch: warning: {path}: {expected}"), result.stderr


def test_orch_validate_cluster_warns_while_the_group_id_is_the_placeholder():
    result = CliRunner().invoke(main, ["validate-cluster", str(CLUSTER_YAML)])
    warnings = result.stderr.strip().splitlines()
    assert result.exit_code == 0 and len(warnings) == 2
    assert all("sg-00000000000000000 is a placeholder" in w for w in warnings)
