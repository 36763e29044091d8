"""Config building: a nested section given in part keeps its field's defaults for the rest."""

from __future__ import annotations

import pytest

from jobs.label import build_config
from pipelines.configs import ConfigError

BASE = ["sppe.random_weights=true", "detector.random_weights=true"]


def test_pipeline_tracking_defaults():
    cfg = build_config(None, BASE)
    assert cfg.tracking.poseflow.mode == "improved" and cfg.tracking.orb.matcher == "windowed"
    assert cfg.tracking.correspondences == "none" and cfg.tracking.orb_params() is None


def test_partial_nested_overrides_keep_the_pipeline_defaults():
    cfg = build_config(
        None, [*BASE, "tracking.orb.window=24", "tracking.poseflow.link_len=50", "tracking.correspondences=orb"]
    )
    assert (cfg.tracking.poseflow.mode, cfg.tracking.poseflow.link_len) == ("improved", 50)
    assert (cfg.tracking.orb.matcher, cfg.tracking.orb.window, cfg.tracking.orb.nfeatures) == ("windowed", 24, 10000)
    assert cfg.tracking.orb_params() == cfg.tracking.orb
    cfg = build_config(None, [*BASE, "tracking.poseflow.mode=released", "tracking.orb.matcher=bruteforce"])
    assert cfg.tracking.poseflow.mode == "released" and cfg.tracking.orb.matcher == "bruteforce"
    assert (
        build_config(None, [*BASE, "tracking.enabled=false", "tracking.correspondences=orb"]).tracking.orb_params()
        is None
    )  # no tracking, nothing to compute in the decode stage


def test_unknown_nested_keys_still_fail():
    with pytest.raises(ConfigError, match="tracking.orb.colour"):
        build_config(None, [*BASE, "tracking.orb.colour=red"])


def test_pose_arch_and_detector_must_fit():
    """``sppe.arch=detector`` needs a YOLO detector and COCO-17; precision is checked per detector."""
    with pytest.raises(ConfigError, match="needs detector.arch=yolo"):
        build_config(None, ["detector.random_weights=true", "sppe.arch=detector"])
    cfg = build_config(None, ["detector.arch=yolo", "detector.random_weights=true", "sppe.arch=detector"])
    assert cfg.sppe.crop is None
    with pytest.raises(ConfigError, match="arch 'yolo' only"):
        build_config(None, [*BASE, "detector.precision=bf16"])
    with pytest.raises(ConfigError, match="flip"):
        build_config(
            None, ["detector.arch=yolo", "detector.random_weights=true", "sppe.arch=detector", "sppe.flip_test=true"]
        )
