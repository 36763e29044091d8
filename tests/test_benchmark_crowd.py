"""benchmarks.crowd on a tiny run: scenes land in their crowd-index bins, the oracle JC-SPPE puts the owner's
labelled joints at the top of its heatmaps, and the report has every method and bin."""

from __future__ import annotations

import json

import numpy as np
import torch

from benchmarks.crowd import CI_BINS, METHODS, build_scenes, detections, load_templates, main, oracle_heatmaps
from models.heatmaps import heatmaps_to_keypoints
from models.pgpg import box_iou_matrix


def test_scenes_and_oracle(shared_data) -> None:
    rng = np.random.default_rng(3)
    templates = load_templates(shared_data / "crowdpose" / "test_crowdpose.json")
    assert len(templates) == 8  # 4 annotated persons and their mirror images
    scenes = build_scenes(rng, templates, 1)
    assert all(any(lo <= s.crowd_index < hi or s.crowd_index == hi == 1.5 for s in scenes) for lo, hi in CI_BINS)
    s = scenes[-1]
    boxes, scores = detections(rng, s, box_nms=1.0)
    hm, crops = oracle_heatmaps(rng, s, boxes, noise=0.0)
    kps, _ = heatmaps_to_keypoints(torch.from_numpy(hm), torch.from_numpy(crops))
    owner = box_iou_matrix(boxes, s.boxes).argmax(1)
    for i, o in enumerate(owner):
        lab = s.visible[o] > 0
        px = (crops[i, 2] - crops[i, 0]) / 48  # one heatmap pixel in image pixels
        inside = (s.keypoints[o, :, 0] > crops[i, 0]) & (s.keypoints[o, :, 0] < crops[i, 2] - px)
        inside &= (s.keypoints[o, :, 1] > crops[i, 1]) & (s.keypoints[o, :, 1] < crops[i, 3] - px)
        err = np.abs(kps[i].numpy() - s.keypoints[o])[lab & inside]
        assert (err <= px).all()


def test_tiny_run_writes_the_report(shared_data, tmp_path) -> None:
    out = tmp_path / "crowd.json"
    argv = ["--scenes-per-bin", "1", "--noise", "0.0", "--data-dir", str(shared_data), "--out", str(out)]
    assert main(argv + ["--dedup-oks", "0.5"]) == 0
    rep = json.loads(out.read_text())
    assert rep["dedup_oks"] == 0.5
    for name in ("crowdpose14", "coco17"):
        level = rep["sets"][name]["levels"]["0.0"]
        assert set(level) == set(METHODS)
        for m in METHODS:
            assert len(level[m]["bins"]) == len(CI_BINS) and 0 <= level[m]["AP"] <= 1
        for m in ("released", "paper"):  # the duplicate filter only removes poses, and its time adds on
            d = level[f"{m}+dedup"]
            assert d["surplus_per_image"] <= level[m]["surplus_per_image"] and d["recovered"] <= level[m]["recovered"]
            assert d["ms_per_frame"] >= level[m]["ms_per_frame"]
