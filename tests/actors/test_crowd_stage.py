"""CrowdPose association in the pipeline's actors, called directly on hand-built batches (no Ray): the SPPE actor's
joint-candidate columns, and the pose-NMS stage's ``crowd_association`` branch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actors.common import ragged
from actors.pose_nms import CANDIDATE_COLUMNS, apply_pose_nms, candidate_columns, candidates_of_row
from actors.sppe import SPPE, SPPEConfig
from models.crowdpose import (
    ALPHAPOSE_CANDIDATES,
    PAPER_PARAMS,
    RELEASED_PARAMS,
    CandidateParams,
    crowd_association,
    joint_candidates,
)
from models.heatmaps import render_gaussian_heatmaps
from models.pose_nms import PoseNMSParams, pose_nms
from models.transforms import ALPHAPOSE_CROP, image_to_heatmap_coords

CROWD = PoseNMSParams(method="crowd_association")


def _two_person_frame(rng: np.random.Generator):
    """Two overlapping people (14 joints), a box each plus a duplicate of the first, and JC-SPPE-like heatmaps: the
    owner's joints at 1, the other person's at 0.5 (as ``benchmarks.crowd``'s oracle, without noise)."""
    base = np.stack([np.full(14, 60.0) + rng.uniform(0, 40, 14), np.linspace(40, 260, 14)], axis=1)
    people = np.stack([base, base + [45.0, 6.0]])  # [2, 14, 2]
    boxes = np.array([[40, 20, 120, 290], [85, 26, 165, 296], [42, 22, 121, 289]], np.float64)
    owner = np.array([0, 1, 0])
    crops = ALPHAPOSE_CROP.crop_boxes(boxes)
    maps = []
    for i in range(len(boxes)):
        c = image_to_heatmap_coords(people, np.repeat(crops[i : i + 1], 2, 0))
        hm = render_gaussian_heatmaps(torch.as_tensor(c), sigma=2.0).numpy()  # [2, 14, 64, 48]
        amp = np.where(np.arange(2) == owner[i], 1.0, 0.5)[:, None, None, None]
        maps.append((amp * hm).max(axis=0))
    return boxes, np.array([0.95, 0.9, 0.6]), np.stack(maps).astype(np.float32), crops


def test_candidate_columns_round_trip_per_frame():
    rng = np.random.default_rng(0)
    boxes, _, hm, crops = _two_person_frame(rng)
    cands = joint_candidates(hm, crops)
    cols = candidate_columns(cands, [2, 0, 1])
    assert set(cols) == set(CANDIDATE_COLUMNS)
    assert [len(x) for x in cols["candidate_xy"]] == [2, 0, 1]
    assert cols["candidate_xy"][0].dtype == np.float32 and cols["candidate_counts"][0].dtype == np.int32
    assert cols["candidate_xy"][1].shape == (0, 14, ALPHAPOSE_CANDIDATES.max_candidates, 2)
    back = candidates_of_row(cols["candidate_xy"][2], cols["candidate_scores"][2], cols["candidate_counts"][2])
    np.testing.assert_array_equal(back.valid, cands.valid[2:])
    np.testing.assert_array_equal(back.count, cands.count[2:])
    np.testing.assert_allclose(back.xy, cands.xy[2:], atol=1e-4)  # float32 on the wire
    np.testing.assert_allclose(back.scores, cands.scores[2:], atol=1e-6)
    assert (cands.count[:, :, None] > 1).any()  # the interference peaks made second candidates
    with pytest.raises(ValueError, match="disagree"):
        candidates_of_row(cols["candidate_xy"][0], cols["candidate_scores"][0][:, :3], cols["candidate_counts"][0])


def _frames_batch(boxes, scores, hm, crops):
    """Frame 0: the three persons; frame 1: an error row; frame 2: nobody."""
    cands = joint_candidates(hm, crops)
    k = hm.shape[1]
    batch = {
        "video_id": np.array(["v", "v", "v"], dtype=object),
        "frame_index": np.array([0, 1, 2]),
        "boxes_xyxy": ragged([boxes.astype(np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)]),
        "box_scores": ragged([scores.astype(np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)]),
        "crop_boxes_xyxy": ragged([crops, np.zeros((0, 4)), np.zeros((0, 4))]),
        "keypoints": ragged([cands.xy[:, :, 0].astype(np.float32), np.zeros((0, k, 2)), np.zeros((0, k, 2))]),
        "keypoint_scores": ragged([cands.scores[:, :, 0].astype(np.float32), np.zeros((0, k)), np.zeros((0, k))]),
        "error": np.array(["", "decode failed", ""], dtype=object),
    }
    batch.update(candidate_columns(cands, [3, 0, 0]))
    return batch, cands


@pytest.mark.parametrize("crowd", [RELEASED_PARAMS, PAPER_PARAMS], ids=["released", "paper"])
def test_pose_nms_stage_runs_the_association_on_the_candidate_columns(crowd):
    rng = np.random.default_rng(1)
    boxes, scores, hm, crops = _two_person_frame(rng)
    batch, cands = _frames_batch(boxes, scores, hm, crops)
    out = apply_pose_nms(batch, CROWD, crowd)
    ref = crowd_association(boxes, scores, cands, params=crowd)
    # the same columns as pose NMS gives (candidates and crop boxes dropped): the tables keep their schema
    nms_out = apply_pose_nms({c: v for c, v in batch.items() if c not in CANDIDATE_COLUMNS}, PoseNMSParams())
    assert sorted(out) == sorted(nms_out)
    assert not set(CANDIDATE_COLUMNS) & set(out)
    assert out["n_persons"].tolist() == [len(ref), 0, 0]
    assert len(ref) >= 2
    np.testing.assert_allclose(out["keypoints"][0], ref.keypoints, atol=1e-3)
    np.testing.assert_allclose(out["keypoint_scores"][0], ref.keypoint_scores, atol=1e-5)
    np.testing.assert_allclose(out["pose_scores"][0], ref.pose_scores, atol=1e-5)
    np.testing.assert_allclose(out["boxes_xyxy"][0], boxes[ref.kept], atol=1e-4)
    assert out["keypoints"][1].shape == (0, 14, 2) and out["pose_scores"][2].shape == (0,)


def test_pose_nms_stage_needs_candidates_for_the_association():
    rng = np.random.default_rng(2)
    batch, _ = _frames_batch(*_two_person_frame(rng))
    plain = {c: v for c, v in batch.items() if c not in CANDIDATE_COLUMNS}
    with pytest.raises(ValueError, match="needs the SPPE stage's joint candidates"):
        apply_pose_nms(plain, CROWD)
    with pytest.raises(ValueError, match="needs joint candidates"):
        pose_nms(np.zeros((1, 4)), np.ones(1), np.zeros((1, 14, 2)), np.ones((1, 14)), CROWD)


def test_sppe_actor_emits_joint_candidates_and_their_current_keypoints():
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (2, 256, 192, 3), dtype=np.uint8), np.zeros((0, 256, 192, 3), np.uint8)]
    crops.append(rng.integers(0, 255, (1, 256, 192, 3), dtype=np.uint8))
    boxes = [np.array([[0, 0, 96, 128], [10, 10, 58, 74]], float), np.zeros((0, 4)), np.array([[5, 5, 197, 261.0]])]
    batch = {
        "video_id": np.array(["a", "a", "b"], dtype=object),
        "crops": ragged(crops),
        "crop_boxes_xyxy": ragged(boxes),
        "error": np.array(["", "", ""], dtype=object),
    }
    params = CandidateParams(max_candidates=3)
    cfg = SPPEConfig(arch="fastpose_res18", random_weights=True, batch_size=2, device="cpu", flip_test=True)
    actor = SPPE(cfg, candidates=params)
    out = actor(batch)
    assert [len(x) for x in out["candidate_xy"]] == [2, 0, 1]
    assert out["candidate_xy"][0].shape == (2, 17, 3, 2) and out["candidate_counts"][2].shape == (1, 17)
    for f in range(3):
        np.testing.assert_allclose(out["keypoints"][f], out["candidate_xy"][f][:, :, 0], atol=1e-4)
        np.testing.assert_allclose(out["keypoint_scores"][f], out["candidate_scores"][f][:, :, 0], atol=1e-6)
        assert (out["candidate_counts"][f] >= 1).all()
    # the candidates are those of the flip-tested heatmaps, chunked (batch_size 2) or not

    from models.heatmaps import flip_test
    from models.keypoints import get_keypoint_set
    from models.transforms import normalize_crops

    pooled = np.concatenate([crops[0], crops[2]])
    with torch.inference_mode():
        x = normalize_crops(torch.as_tensor(pooled))
        hm = flip_test(actor.model, x, get_keypoint_set("coco17").flip_pairs).float()
    ref = joint_candidates(hm, np.concatenate([boxes[0], boxes[2]]), params=params)
    np.testing.assert_array_equal(np.concatenate([out["candidate_counts"][0], out["candidate_counts"][2]]), ref.count)
    np.testing.assert_allclose(np.concatenate([out["candidate_xy"][0], out["candidate_xy"][2]]), ref.xy, atol=1e-3)
    # a batch without persons still carries (empty) candidate columns
    empty = actor({c: v[1:2] for c, v in batch.items()})
    assert empty["candidate_xy"][0].shape == (0, 17, 3, 2) and empty["candidate_counts"][0].dtype == np.int32
    # without candidates: no candidate columns, the configured decoder's keypoints
    plain = SPPE(cfg)(batch)
    assert not set(CANDIDATE_COLUMNS) & set(plain)


def test_sppe_actor_refuses_candidates_without_heatmaps():
    with pytest.raises(ValueError, match="joint candidates need heatmaps"):
        SPPE(SPPEConfig(arch="fastpose_res18", random_weights=True, decode="integral"), candidates=ALPHAPOSE_CANDIDATES)
    with pytest.raises(ValueError, match="joint candidates need heatmaps"):
        SPPE(SPPEConfig(arch="blazepose_full", checkpoint="/nonexistent.pt"), candidates=ALPHAPOSE_CANDIDATES)
