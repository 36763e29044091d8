"""``python -m jobs.fit_pose_nms`` on ``../shared/data/coco/test_coco.json`` with candidates generated from its
ground truth (seeded), plus the candidate formats and the input checks (exit 2, naming the file)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from jobs.fit_pose_nms import evaluate_ap, load_candidates, load_ground_truth, main, make_candidates, save_candidates
from models.pose_nms import BODY_PARAMS, PoseNMSParams


@pytest.fixture
def gt_path(shared_data):
    return shared_data / "coco" / "test_coco.json"


@pytest.fixture
def candidates_json(tmp_path, coco_gt):
    path = tmp_path / "candidates.json"
    save_candidates(make_candidates(coco_gt, seed=0), path)
    return path


def _ap(text: str, which: str) -> float:
    return float(re.search(rf"AP {which}:\s+([0-9.]+)", text).group(1))


def test_fit_raises_ap_and_writes_loadable_yaml(tmp_path, gt_path, candidates_json, capsys):
    out = tmp_path / "pose_nms.yaml"
    assert (
        main(
            [
                "--gt",
                str(gt_path),
                "--candidates",
                str(candidates_json),
                "--out",
                str(out),
                "--rounds",
                "2",
                "--grid-size",
                "3",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    before, after = _ap(printed, "before"), _ap(printed, "after")
    assert after >= before
    assert after > before + 0.05  # the duplicates of these candidates cost AP that NMS can win back
    assert "Average Precision" not in printed  # pycocotools' tables are suppressed

    fitted = PoseNMSParams.from_dict(yaml.safe_load(out.read_text()))
    assert fitted != BODY_PARAMS
    # Only the four fitted constants move.
    unchanged = {k: v for k, v in fitted.to_dict().items() if k not in ("delta1", "mu", "delta2", "gamma")}
    assert unchanged == {k: v for k, v in BODY_PARAMS.to_dict().items() if k in unchanged}
    # The YAML reproduces the printed AP.
    coco, _ = load_ground_truth(gt_path)
    frames = load_candidates(candidates_json)
    assert evaluate_ap(coco, frames, fitted) == pytest.approx(after, abs=5e-5)
    assert evaluate_ap(coco, frames, BODY_PARAMS) == pytest.approx(before, abs=5e-5)
    header = re.search(r"AP before: ([0-9.]+), after: ([0-9.]+)", out.read_text())
    assert float(header.group(1)) == pytest.approx(before, abs=5e-5)
    assert float(header.group(2)) == pytest.approx(after, abs=5e-5)


def test_fit_without_out_prints_yaml(gt_path, candidates_json, capsys):
    assert main(["--gt", str(gt_path), "--candidates", str(candidates_json), "--rounds", "1", "--grid-size", "2"]) == 0
    printed = capsys.readouterr().out
    body = printed[printed.index("# Pose NMS parameters") :]
    assert PoseNMSParams.from_dict(yaml.safe_load(body)).method == "parametric"


def test_make_candidates_is_seeded_and_covers_every_labelled_person(coco_gt):
    a, b = make_candidates(coco_gt, seed=3), make_candidates(coco_gt, seed=3)
    assert a == b and a != make_candidates(coco_gt, seed=4)
    people = sum(1 for ann in coco_gt["annotations"] if ann.get("num_keypoints") and not ann.get("iscrowd"))
    assert len(a) == people * 4 + len(coco_gt["images"]) * 2  # 1 accurate + 3 duplicates, 2 background
    assert {r["image_id"] for r in a} == {img["id"] for img in coco_gt["images"]}
    assert all(len(r["keypoints"]) == 51 and len(r["bbox"]) == 4 for r in a)


def test_parquet_and_json_candidates_load_the_same(tmp_path, coco_gt):
    records = make_candidates(coco_gt, seed=1)
    save_candidates(records, tmp_path / "c.json")
    save_candidates(records, tmp_path / "c.parquet")
    from_json, from_parquet = load_candidates(tmp_path / "c.json"), load_candidates(tmp_path / "c.parquet")
    assert [f.image_id for f in from_json] == [f.image_id for f in from_parquet]
    for a, b in zip(from_json, from_parquet):
        for name in ("boxes_xyxy", "box_scores", "keypoints", "keypoint_scores"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12)
    assert sum(len(f.box_scores) for f in from_json) == len(records)


def test_bad_inputs_exit_2_naming_the_file(tmp_path, gt_path, candidates_json, coco_gt, capsys):
    def run(*args) -> tuple[int, str]:
        code = main(list(args))
        return code, capsys.readouterr().err

    missing = tmp_path / "nope.json"
    code, err = run("--gt", str(missing), "--candidates", str(candidates_json))
    assert code == 2 and str(missing) in err and "not found" in err
    code, err = run("--gt", str(gt_path), "--candidates", str(missing))
    assert code == 2 and str(missing) in err

    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    code, err = run("--gt", str(junk), "--candidates", str(candidates_json))
    assert code == 2 and str(junk) in err
    code, err = run("--gt", str(gt_path), "--candidates", str(junk))
    assert code == 2 and str(junk) in err

    not_keypoints = tmp_path / "boxes_only.json"
    not_keypoints.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1}]}))
    code, err = run("--gt", str(not_keypoints), "--candidates", str(candidates_json))
    assert code == 2 and "keypoints" in err

    csv = tmp_path / "candidates.csv"
    csv.write_text("image_id\n1\n")
    code, err = run("--gt", str(gt_path), "--candidates", str(csv))
    assert code == 2 and ".json or .parquet" in err

    records = make_candidates(coco_gt, seed=0)
    stranger = tmp_path / "stranger.json"
    save_candidates([{**records[0], "image_id": 123456789}] + records[1:], stranger)
    code, err = run("--gt", str(gt_path), "--candidates", str(stranger))
    assert code == 2 and "123456789" in err and str(stranger) in err

    short = tmp_path / "short.json"
    save_candidates([{**r, "keypoints": r["keypoints"][:42]} for r in records], short)
    code, err = run("--gt", str(gt_path), "--candidates", str(short))
    assert code == 2 and "14 keypoints" in err

    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps([{"image_id": 785, "bbox": [0, 0, 1, 1]}]))
    code, err = run("--gt", str(gt_path), "--candidates", str(incomplete))
    assert code == 2 and "lacks score, keypoints" in err

    code, err = run(
        "--gt", str(gt_path), "--candidates", str(candidates_json), "--out", str(tmp_path / "no_such_dir" / "p.yaml")
    )
    assert code == 2 and "does not exist" in err
    bad_init = tmp_path / "init.yaml"
    bad_init.write_text("gama: 3\n")
    code, err = run("--gt", str(gt_path), "--candidates", str(candidates_json), "--init", str(bad_init))
    assert code == 2 and str(bad_init) in err and "gama" in err

    with pytest.raises(SystemExit) as e:
        main(["--gt", str(gt_path), "--candidates", str(candidates_json), "--rounds", "0"])
    assert e.value.code == 2
