"""cluster.yaml passes the Ray cluster launcher's own validation and pins the same Ray as pyproject.toml."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _validate(cfg: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(cfg))
    validate_config(cfg)
    return cfg


def test_cluster_yaml_is_valid_and_pins_our_ray():
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    prepared = _validate(cfg)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(re.search(r"==([\d.]+)", d).group(1) for d in deps if d.startswith("ray["))
    setup = " ".join(cfg["setup_commands"])
    assert f'ray[default]=={pinned}"' in setup
    import ray

    assert ray.__version__ == pinned


def test_validator_rejects_a_broken_config():
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    cfg["head_node_type"] = "no_such_type"
    with pytest.raises(Exception, match="head_node_type"):
        _validate(cfg)


def test_kuberay_rayjob_manifest():
    """deploy/rayjob.yaml: the RayJob fields KubeRay requires, our entrypoint, and the same Ray as pyproject."""
    job = yaml.safe_load((REPO / "deploy" / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m jobs.label ")
    cluster = spec["rayClusterSpec"]
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(re.search(r"==([\d.]+)", d).group(1) for d in deps if d.startswith("ray["))
    assert cluster["rayVersion"] == pinned
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and group["template"]["spec"]["containers"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
