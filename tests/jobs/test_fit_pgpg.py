"""``jobs.fit_pgpg``: PGPG fitted from COCO ground truth and a detector's boxes, written as JSON data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.fit_pgpg import main as fit_main
from models.pgpg import PGPGModel


def test_fits_the_shared_coco_persons_and_writes_a_loadable_model(shared_data, tmp_path, capsys):
    out = tmp_path / "pgpg.json"
    gt = shared_data / "coco" / "test_coco.json"
    dets = shared_data / "coco" / "test_coco_det_AP_H_56.json"
    assert fit_main(["--gt", str(gt), "--detections", str(dets), "--out", str(out)]) == 0
    assert "12 of 12 GT persons matched a detection in 4 images" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    model = PGPGModel.from_dict(doc["model"])
    assert model.k == 1  # 12 persons are too few for two atoms of the minimum size: one, said so
    assert model.to_dict() == doc["model"]


def _synthetic_coco(tmp_path, n_per_atom: int = 60, seed: int = 0):
    """Three distinct poses (standing, arms up, crouching), each with its own detector-offset law."""
    rng = np.random.default_rng(seed)
    base = np.array(
        [[0, -8], [-1, -9], [1, -9], [-2, -8.5], [2, -8.5], [-3, -6], [3, -6], [-4, -3], [4, -3], [-4.5, 0],
         [4.5, 0], [-2, 0], [2, 0], [-2, 4], [2, 4], [-2, 8], [2, 8]], float)  # fmt: skip
    arms_up = base.copy()
    arms_up[7:11] = [[-4, -10], [4, -10], [-4, -13], [4, -13]]
    crouch = base.copy()
    crouch[13:17] = [[-7, 1], [7, 1], [-7, 6], [7, 6]]  # knees and feet spread wide: as far from "base" as "arms_up" is
    atoms = [(base, 0.10), (arms_up, -0.15), (crouch, 0.25)]  # pose, mean offset of the box's top edge
    images, anns, dets = [], [], []
    for pose, dy in atoms:
        for _ in range(n_per_atom):
            iid = len(images) + 1
            images.append({"id": iid, "file_name": f"{iid}.jpg", "width": 640, "height": 480})
            kp = pose * 10 + [320, 240] + rng.normal(0, 2, pose.shape)
            x1, y1 = kp.min(0) - 5
            x2, y2 = kp.max(0) + 5
            w, h = x2 - x1, y2 - y1
            flat = np.concatenate([kp, np.full((17, 1), 2.0)], 1).reshape(-1).tolist()
            anns.append(
                {"id": iid, "image_id": iid, "bbox": [x1, y1, w, h], "keypoints": flat, "num_keypoints": 17,
                 "iscrowd": 0, "category_id": 1, "area": w * h}
            )  # fmt: skip
            d = rng.normal([0.0, dy, 0.0, 0.0], 0.02) * [w, h, w, h]
            dets.append({"image_id": iid, "category_id": 1, "score": 0.9,
                         "bbox": [x1 + d[0], y1 + d[1], w + d[2] - d[0], h + d[3] - d[1]]})  # fmt: skip
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person", "keypoints": []}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    return atoms


def test_known_atoms_and_their_offsets_are_recovered_end_to_end(tmp_path):
    atoms = _synthetic_coco(tmp_path)
    out = tmp_path / "pgpg.json"
    args = ["--gt", str(tmp_path / "gt.json"), "--detections", str(tmp_path / "dets.json"), "--out", str(out)]
    assert fit_main(args) == 0
    model = PGPGModel.from_dict(json.loads(out.read_text())["model"])
    assert model.k == 3
    # each known pose's atom has its own top-edge offset mean (δy1 normalised by the box height)
    found = []
    for pose, dy in atoms:
        kp = pose * 10 + [320, 240]
        atom = model.atom_of(kp, np.ones(17, bool))
        mix = model.mixture_of(atom)
        mean_dy = float(np.sum(mix.weights * mix.means[:, 1]))
        found.append(atom)
        assert mean_dy == pytest.approx(dy, abs=0.02), (dy, mean_dy)
    assert sorted(found) == [0, 1, 2]


def test_detections_from_a_raypose_output_folder(tmp_path, shared_data, capsys):
    """A raypose output that labelled the same images: its boxes are matched to the GT by frame file name."""
    from store.schema import keypoint_table, table_metadata
    from store.writers import write_table_atomic

    gt = json.loads((shared_data / "coco" / "test_coco.json").read_text())
    anns = [a for a in gt["annotations"] if a.get("num_keypoints")]
    names = {i["id"]: i["file_name"] for i in gt["images"]}
    p = len(anns)
    boxes = np.asarray(
        [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
    )
    boxes[:, :2] -= 3.0  # the detector's box: 3 px larger on the top-left
    table = keypoint_table(
        source_uri=np.asarray([f"/data/coco/{names[a['image_id']]}" for a in anns], dtype=object),
        frame_index=np.zeros(p, np.int64),
        timestamp_s=np.full(p, np.nan),
        image_width=np.full(p, 640),
        image_height=np.full(p, 480),
        person_index=np.arange(p),
        track_id=None,
        box_xyxy=boxes.astype(np.float32),
        box_score=np.ones(p),
        keypoints=np.zeros((p, 17, 2), np.float32),
        keypoint_scores=np.ones((p, 17)),
        pose_score=np.ones(p),
        keypoint_set="coco17",
        detector="d",
        detector_sha256="x",
        sppe="s",
        sppe_sha256="y",
        metadata=table_metadata(random_weights=False),
    )
    out = tmp_path / "labels"
    write_table_atomic(table, f"{out}/poses/video_id=coco-0000aaaa/part-0.parquet")
    args = ["--gt", str(shared_data / "coco" / "test_coco.json"), "--detections", str(out)]
    assert fit_main([*args, "--out", str(tmp_path / "m.json")]) == 0
    assert f"{p} of {p} GT persons matched" in capsys.readouterr().out
    model = PGPGModel.from_dict(json.loads((tmp_path / "m.json").read_text())["model"])
    mix = model.mixture_of(0)
    # every offset is (−3/w, −3/h, 0, 0): the fitted mean's x2, y2 are 0 and x1, y1 negative
    mean = np.sum(mix.weights[:, None] * mix.means, axis=0)
    assert mean[0] < 0 and mean[1] < 0 and abs(mean[2]) < 1e-6 and abs(mean[3]) < 1e-6


def test_bad_inputs_exit_2_naming_the_file(tmp_path, shared_data, capsys):
    gt = str(shared_data / "coco" / "test_coco.json")
    dets = str(shared_data / "coco" / "test_coco_det_AP_H_56.json")
    out = str(tmp_path / "m.json")
    assert fit_main(["--gt", str(tmp_path / "nope.json"), "--detections", dets, "--out", out]) == 2
    assert "nope.json: file not found" in capsys.readouterr().err
    assert fit_main(["--gt", gt, "--gt", gt, "--detections", dets, "--out", out]) == 2
    assert "give them in pairs" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert fit_main(["--gt", str(tmp_path / "bad.json"), "--detections", dets, "--out", out]) == 2
    assert "not a COCO annotation file" in capsys.readouterr().err
    (tmp_path / "far.json").write_text(json.dumps([{"image_id": 785, "bbox": [0, 0, 1, 1], "score": 1.0}]))
    assert fit_main(["--gt", gt, "--detections", str(tmp_path / "far.json"), "--out", out]) == 2
    assert "no GT person matched a detection" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
