"""cluster.yaml must pass the schema shipped inside the ray package."""
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"


def test_cluster_yaml_is_valid_for_the_ray_launcher():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    validate_config(prepare_config(config))  # prepare: fills the defaults, as `ray up` does
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] == 8
    assert any("pip install" in c for c in config["setup_commands"])


def test_a_broken_variant_is_rejected():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    del config["head_node_type"]
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(config))
