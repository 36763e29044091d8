"""``pose_nms.method=crowd_association`` in the label job's config: parsed, the association picked by ``crowd.method``,
and refused before Ray starts where the pose network has no heatmaps to read candidates from."""

from __future__ import annotations

import pytest

from jobs.label import build_config
from jobs.label import main as label_main
from pipelines.configs import ConfigError

BASE = ["sppe.random_weights=true", "detector.random_weights=true", "sppe.arch=fastpose_res18"]
CROWD = ["pose_nms.method=crowd_association"]


def test_crowd_association_config_and_its_hash_part():
    cfg = build_config(None, BASE + CROWD)
    assert cfg.pose_nms.method == "crowd_association" and cfg.crowd.method == "released"
    assert build_config(None, BASE + CROWD + ["crowd.method=paper"]).crowd.method == "paper"
    assert build_config(None, BASE + CROWD + ["sppe.decode=dark", "sppe.flip_test=true"]).sppe.decode == "dark"
    assert "crowd" in cfg.result_affecting()
    # unused, the crowd block changes no hash (configs from before it existed hash as they did)
    plain = build_config(None, BASE)
    assert "crowd" not in plain.result_affecting()
    assert plain.result_affecting() == build_config(None, BASE + ["crowd.method=paper"]).result_affecting()
    # the candidates the SPPE extracts are configurable (M slots per joint, AlphaPose's thresholds by default)
    assert cfg.candidates.max_candidates == 4 and cfg.candidates.peak_threshold == 0.1
    six = build_config(None, BASE + CROWD + ["candidates.max_candidates=6"])
    assert six.candidates.max_candidates == 6 and six.result_affecting() != cfg.result_affecting()
    assert "candidates" not in plain.result_affecting()
    with pytest.raises((ConfigError, ValueError), match="CandidateParams"):
        build_config(None, BASE + CROWD + ["candidates.window=4"])
    # raypose's duplicate filter on the association's output (models.crowdpose.suppress_duplicates): off by
    # default (AlphaPose's output), an OKS threshold in (0, 1] turns it on and enters the hash with the crowd block
    assert cfg.crowd.duplicate_oks is None and cfg.result_affecting()["crowd"]["duplicate_oks"] is None
    dedup = build_config(None, BASE + CROWD + ["crowd.duplicate_oks=0.9", "crowd.duplicate_joint_score=0.1"])
    assert dedup.crowd.duplicate_oks == 0.9 and dedup.crowd.duplicate_joint_score == 0.1
    assert dedup.result_affecting()["crowd"]["duplicate_oks"] == 0.9
    assert dedup.result_affecting() != cfg.result_affecting()
    assert build_config(None, BASE + CROWD + ["crowd.duplicate_oks=null"]).crowd.duplicate_oks is None
    with pytest.raises(ConfigError, match="duplicate_oks=1.5 must be in"):
        build_config(None, BASE + CROWD + ["crowd.duplicate_oks=1.5"])
    with pytest.raises(ConfigError, match="crowd.*method='greedy'; choose one of released, paper"):
        build_config(None, BASE + CROWD + ["crowd.method=greedy"])
    with pytest.raises(ConfigError, match="choose one of parametric, oks, soft_oks, crowd_association"):
        build_config(None, BASE + ["pose_nms.method=matching"])


HEATMAP_SPPE = ["sppe.random_weights=true", "sppe.arch=fastpose_res18"]


@pytest.mark.parametrize(
    "sppe, why",
    [
        (["sppe.arch=blazepose_full"], "sppe.arch=blazepose_full regresses keypoints"),
        (["sppe.arch=detector", "detector.arch=yolo"], "sppe.arch=detector takes the detector's own keypoints"),
        (HEATMAP_SPPE + ["sppe.decode=integral"], "sppe.decode=integral decodes integral-regression outputs"),
        (
            HEATMAP_SPPE + ["sppe.decode=combined", "sppe.keypoint_set=halpe136", "sppe.num_joints=136"],
            "sppe.decode=combined decodes integral-regression outputs",
        ),
    ],
)
def test_crowd_association_is_refused_without_heatmaps(sppe, why):
    setup = ["detector.random_weights=true"] + sppe
    with pytest.raises(ConfigError, match="pose_nms.method=crowd_association needs joint candidates") as e:
        build_config(None, setup + CROWD)
    assert why in str(e.value)
    build_config(None, setup)  # the same setup with pose NMS is fine


def test_label_job_refuses_it_before_ray_starts(tmp_path, capsys):
    """Exit 2 with the reason, before inputs are even listed (the input does not exist) and before Ray starts."""
    args = ["--input", str(tmp_path / "none"), "--output", str(tmp_path / "out")]
    sets = ["--set", "sppe.arch=blazepose_full", "--set", "detector.random_weights=true", "--set", CROWD[0]]
    assert label_main(args + sets) == 2
    err = capsys.readouterr().err
    assert "pose_nms.method=crowd_association needs joint candidates" in err and "blazepose_full" in err
    assert not (tmp_path / "out").exists()
