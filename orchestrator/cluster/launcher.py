"""`orch validate-cluster`: check a Ray cluster-launcher YAML offline, as `ray up` would.

Two passes: every violation of the JSON schema that ships inside the ray package
(ray/autoscaler/ray-schema.json), each with the path of the offending key; then, if the schema
is satisfied, Ray's own validation of the config with its defaults filled in
(`validate_config(prepare_config(config))`), which also checks how node types fit together.
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

# cluster.yaml's security group id until the user puts cluster-aws.yaml's output there.
PLACEHOLDER_GROUP = "sg-00000000000000000"
WORLD = ("0.0.0.0/0", "::/0")
SSH_PORT = 22


@dataclass(frozen=True)
class Verdict:
    problems: list[str]
    summary: str  # what the config describes; empty if there are problems
    warnings: list[str] = field(default_factory=list)  # valid, but exposed (see security_warnings)


def validate_cluster_file(path: Path) -> Verdict:

    try:
        config = yaml.safe_load(path.read_text())
    except OSError as error:
        return Verdict([f"cannot read {path}: {error.strerror}"], "")
    except yaml.YAMLError as error:
        return Verdict([f"not valid YAML: {' '.join(str(error).split())}"], "")
    if not isinstance(config, dict):
        return Verdict(["the file must hold a mapping of launcher settings (cluster_name, provider, ...)"], "")
    problems = schema_problems(config) or ray_problems(config)
    if problems:  # what is wrong first; what is exposed once the file is valid
        return Verdict(problems, "")
    return Verdict([], summarise(config), security_warnings(config))


def schema_problems(config: dict[str, Any]) -> list[str]:

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    return [f"{_key_path(e.absolute_path)}: {e.message}" for e in errors]


def ray_problems(config: dict[str, Any]) -> list[str]:
    """Ray's checks beyond the schema (head_node_type is a node type, min <= max workers, ...)."""
    # prepare_config logs each default it fills in at INFO; that is noise here.
    util_logger = logging.getLogger("ray.autoscaler._private.util")
    level = util_logger.level
    util_logger.setLevel(logging.WARNING)
    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except jsonschema.ValidationError as error:
        return [f"{_key_path(error.absolute_path)}: {error.message}"]
    except (ValueError, RuntimeError, KeyError, TypeError) as error:
        return [" ".join(str(error).split()) or type(error).__name__]
    finally:
        util_logger.setLevel(level)
    return []


def security_warnings(config: dict[str, Any]) -> list[str]:
    """What an AWS config leaves open: SSH from anywhere (a rule of its own, or Ray's default
    security group, which Ray creates for a node type without SecurityGroupIds), a security
    group id still the placeholder, or a node type left to Ray's default instance profile."""
    if config.get("provider", {}).get("type") != "aws":
        return []
    warnings = [f"provider.security_group.IpPermissions: SSH (port {SSH_PORT}) is open to {cidr}; "
                "allow only your own address range"
                for rule in config["provider"].get("security_group", {}).get("IpPermissions", [])
                if _covers_ssh(rule) for cidr in _world_ranges(rule)]
    for name, node_type in config.get("available_node_types", {}).items():
        node_config = node_type.get("node_config", {})
        where = f"available_node_types.{name}.node_config"
        groups = node_config.get("SecurityGroupIds")
        if not groups and "NetworkInterfaces" not in node_config:
            warnings.append(f"{where}: no SecurityGroupIds, so Ray creates its default security group, "
                            "with SSH open to 0.0.0.0/0; use cluster-aws.yaml's group")
        elif PLACEHOLDER_GROUP in (groups or []):
            warnings.append(f"{where}.SecurityGroupIds: {PLACEHOLDER_GROUP} is a placeholder; put the "
                            "SecurityGroupId output of cluster-aws.yaml there")
        if "IamInstanceProfile" not in node_config:
            warnings.append(f"{where}: no IamInstanceProfile, so Ray's default applies (on the head: "
                            "EC2-full and S3-full access); use cluster-aws.yaml's profiles")
    return warnings


def _covers_ssh(rule: dict[str, Any]) -> bool:
    if str(rule.get("IpProtocol", "")) == "-1":  # every protocol and port
        return True
    return rule.get("FromPort", 0) <= SSH_PORT <= rule.get("ToPort", 65535)


def _world_ranges(rule: dict[str, Any]) -> list[str]:
    ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
        r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
    return [cidr for cidr in ranges if cidr in WORLD]


def summarise(config: dict[str, Any]) -> str:
    provider = config.get("provider", {})
    types = config.get("available_node_types", {})
    head = config.get("head_node_type")
    workers = []
    max_gpus = 0
    for name, spec in types.items():
        if name == head:
            continue
        resources = spec.get("resources", {})
        high = spec.get("max_workers", config.get("max_workers", 0))
        max_gpus += high * resources.get("GPU", 0)
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(resources.items()))
        workers.append(f"{name} {spec.get('min_workers', 0)}-{high} x {{{shown}}}")
    where = "/".join(str(provider[k]) for k in ("type", "region") if k in provider)
    return (f"valid Ray cluster config '{config.get('cluster_name', '?')}' ({where}): head node type "
            f"{head!r}; worker types: {'; '.join(workers) or 'none'}; up to {max_gpus} GPUs")


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"
