"""The oracle test: the whole Ray pipeline with a ground-truth SPPE must reproduce the ground truth.

``OracleSPPE`` replaces the network by what a perfect one would output: for each person crop it renders the
Gaussian heatmaps of the ground-truth keypoints of the person the detector box belongs to, through that crop's own
affine transform (``models.transforms.image_to_heatmap_coords``), and then decodes them with the production decoder.
Everything else is production code: listing, decoding, precomputed detections (ground-truth boxes plus jittered
duplicates), crops, decoding, pose NMS, the per-video tables, and ``jobs.evaluate``. A bug in any of them shows up
as lost AP.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actors.common import ragged, rows_of
from models.heatmaps import heatmaps_to_keypoints, render_gaussian_heatmaps
from models.transforms import image_to_heatmap_coords

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` [4] with boxes ``b`` [M, 4] (xyxy)."""
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2])
    y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


class OracleSPPE:
    """A perfect SPPE for frames whose ground truth it is given (``cfg``: frame name → persons)."""

    def __init__(self, cfg: dict, threads: int | None = None, streams: int = 1) -> None:
        self.persons = {
            k: [(np.asarray(b), np.asarray(kp), np.asarray(v)) for b, kp, v in ps] for k, ps in cfg["frames"].items()
        }
        self.k = cfg["num_joints"]

    def _gt_for(self, frame_key: str):
        name = str(frame_key).replace("\\", "/").rsplit("/", 1)[-1]
        return self.persons.get(name, [])

    def __call__(self, batch: dict) -> dict:
        kps_out, sc_out = [], []
        for key, boxes, crop_boxes, err in zip(
            batch["frame_key"], rows_of(batch["boxes_xyxy"]), rows_of(batch["crop_boxes_xyxy"]), batch["error"]
        ):
            gt = self._gt_for(key)
            n = 0 if err else len(boxes)
            centres = np.zeros((n, self.k, 2))
            visible = np.zeros((n, self.k), bool)
            for i in range(n):
                if not gt:
                    continue
                ious = _iou(np.asarray(boxes[i], np.float64), np.stack([g[0] for g in gt]))
                j = int(np.argmax(ious))
                if ious[j] < 0.3:
                    continue  # a box on nobody: empty heatmaps, as a good SPPE would give
                _, kp, vis = gt[j]
                hm_xy = image_to_heatmap_coords(kp[None], np.asarray(crop_boxes[i : i + 1], np.float64))[0]
                centres[i] = hm_xy
                visible[i] = (
                    (vis > 0) & (hm_xy[:, 0] >= 0) & (hm_xy[:, 0] <= 47) & (hm_xy[:, 1] >= 0) & (hm_xy[:, 1] <= 63)
                )
            hm = render_gaussian_heatmaps(torch.as_tensor(centres), sigma=2.0, visible=torch.as_tensor(visible))
            kp, sc = heatmaps_to_keypoints(hm, torch.tensor(np.asarray(crop_boxes, np.float64).reshape(-1, 4)[:n]))
            kps_out.append(kp.numpy())
            sc_out.append(sc.numpy())
        out = {k: v for k, v in batch.items() if k != "crops"}
        out["keypoints"], out["keypoint_scores"] = ragged(kps_out), ragged(sc_out)
        out["t_sppe"] = np.zeros(len(kps_out))
        return out


def _frame_names(gt: dict, video: bool) -> dict:
    """GT image id → the name our frame keys end in: the file name, or ``<frame_index>.jpg`` for a video."""
    if video:
        return {im["id"]: f"{im['frame_id']}.jpg" for im in gt["images"]}
    return {im["id"]: im["file_name"].rsplit("/", 1)[-1] for im in gt["images"]}


def _gt_frames(gt: dict, num_joints: int, names: dict, keypoint_set: str | None = None) -> dict:
    """Frame name → persons (box, keypoints, visibility). With ``keypoint_set`` wider than the GT's (COCO-17 GT for a
    136-keypoint oracle), the GT's points go to their channels by name and the others stay invisible."""
    from models.keypoints import conversion_indices

    frames: dict[str, list] = {}
    gt_k = len(gt["annotations"][0]["keypoints"]) // 3
    into = None
    if gt_k != num_joints:
        into = conversion_indices(keypoint_set, "coco17")  # coco17 keypoint j sits at channel into[j]
    for a in gt["annotations"]:
        if not a.get("num_keypoints"):
            continue
        x, y, w, h = a["bbox"]
        k = np.asarray(a["keypoints"], np.float64).reshape(gt_k, 3)
        if into is not None:
            wide = np.zeros((num_joints, 3))
            wide[into] = k
            k = wide
        frames.setdefault(names[a["image_id"]], []).append(([x, y, x + w, y + h], k[:, :2].tolist(), k[:, 2].tolist()))
    return frames


def _detections(gt: dict, path: Path, names: dict, seed: int = 0) -> None:
    """Ground-truth boxes (score 0.9) and one jittered duplicate each (score 0.6): pose NMS must merge them."""
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        key = names[a["image_id"]]
        out.append({"image_id": key, "category_id": 1, "bbox": [x, y, w, h], "score": 0.9})
        d = rng.normal(0, 0.05, 4) * np.array([w, h, w, h])
        out.append(
            {
                "image_id": key,
                "category_id": 1,
                "score": 0.6,
                "bbox": [x + d[0], y + d[1], max(w + d[2], 2.0), max(h + d[3], 2.0)],
            }
        )
    path.write_text(json.dumps(out))


@pytest.fixture(scope="module")
def ray_session():
    import ray

    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=1 << 30, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    yield
    ray.shutdown()


def _run_oracle(
    media: Path,
    gt_path: Path,
    keypoint_set: str,
    num_joints: int,
    out: Path,
    tracking=None,
    overrides: tuple[str, ...] = (),
) -> list[dict]:
    from actors.publish import PublishSpec
    from jobs.label import build_config
    from pipelines.label import configure_data_context, probe_units, run_label
    from store.sources import list_inputs

    gt = json.loads(gt_path.read_text())
    names = _frame_names(gt, video=media.suffix == ".mp4")
    dets = out.parent / f"{out.name}_dets.json"
    _detections(gt, dets, names)
    cfg = build_config(
        None,
        [
            "detector.arch=precomputed",
            f"detector.weights={dets}",
            "sppe.random_weights=true",
            f"sppe.keypoint_set={keypoint_set}",
            f"sppe.num_joints={num_joints}",
            *overrides,
        ],
    )
    configure_data_context()
    units = list_inputs([str(media)])
    spec = PublishSpec(
        output=str(out),
        run_id="oracle",
        config_hash="oracle",
        fingerprints={u.video_id: u.fingerprint for u in units},
        keypoint_set=keypoint_set,
        sppe="oracle",
        sppe_sha256="oracle",
        random_weights=False,
        tracking=tracking,
    )
    summaries = run_label(
        probe_units(units, cfg),
        cfg,
        spec,
        sppe_stage=OracleSPPE,
        sppe_cfg={"frames": _gt_frames(gt, num_joints, names, keypoint_set), "num_joints": num_joints},
    )
    assert [s["num_errors"] for s in summaries] == [0] and summaries[0]["published"]
    return summaries


@pytest.mark.parametrize(
    "dataset, gt_name, keypoint_set, num_joints, kind",
    [
        ("coco", "test_coco.json", "coco17", 17, "coco"),
        ("crowdpose", "test_crowdpose.json", "crowdpose14", 14, "crowdpose"),
        # a 136-keypoint (Halpe-136) heatmap model on COCO: the full-body pose-NMS path, the 136-channel tables, and
        # the evaluator's Halpe-136 → COCO-17 conversion; AP on the body subset must equal the 17-keypoint run's
        ("coco", "test_coco.json", "halpe136", 136, "coco"),
    ],
)
def test_oracle_image_ap(ray_session, shared_data, tmp_path, dataset, gt_name, keypoint_set, num_joints, kind):
    """COCO keypoint AP / CrowdPose AP of the whole pipeline with a perfect SPPE must be ≥ 0.90."""
    from jobs.evaluate import main as evaluate

    out = tmp_path / dataset
    gt_path = shared_data / dataset / gt_name
    _run_oracle(shared_data / dataset, gt_path, keypoint_set, num_joints, out)
    assert (
        evaluate(["--output", str(out), "--gt", str(gt_path), "--kind", kind, "--out", str(tmp_path / "eval.json")])
        == 0
    )
    stats = json.loads((tmp_path / "eval.json").read_text())["stats"]
    print(f"oracle {dataset} {keypoint_set}:", json.dumps(stats))
    assert stats["AP"] >= 0.90, stats
    _ORACLE_AP[(dataset, keypoint_set)] = stats["AP"]
    if keypoint_set == "halpe136":
        if (dataset, "coco17") not in _ORACLE_AP:  # run alone: the 17-keypoint run it must equal
            (tmp_path / "k17").mkdir()
            test_oracle_image_ap(ray_session, shared_data, tmp_path / "k17", dataset, gt_name, "coco17", 17, kind)
        assert stats["AP"] == pytest.approx(_ORACLE_AP[(dataset, "coco17")], abs=1e-9)


_ORACLE_AP: dict[tuple[str, str], float] = {}


@pytest.mark.parametrize("mode, correspondences", [("released", "none"), ("improved", "none"), ("released", "orb")])
def test_oracle_bonn_video_tracking(ray_session, shared_data, tmp_path, mode, correspondences):
    """The Bonn clip (mp4, 4 people, 41 frames) with PoseFlow in the per-video stage: identities must hold.

    With ORB correspondences (computed in the decode stage, shards of 16 frames so that pairs cross shard boundaries)
    the published ids must also equal PoseFlow run directly on the published poses with the whole clip's pairs."""
    from jobs.evaluate import main as evaluate
    from models.poseflow import PoseFlowParams

    out = tmp_path / "bonn"
    gt_path = shared_data / "bonn_posetrack" / "060470979.json"
    video = shared_data / "bonn_posetrack" / "060470979.mp4"
    params = PoseFlowParams(mode=mode)
    overrides = (
        ("tracking.correspondences=orb", "tracking.orb.matcher=windowed", "run.shard_frames=16")
        if correspondences == "orb"
        else ()
    )
    (summary,) = _run_oracle(video, gt_path, "crowdpose14", 14, out, tracking=params, overrides=overrides)
    orb_seconds = json.loads(summary["stage_seconds_json"])["orb"]
    assert (orb_seconds > 0) == (correspondences == "orb")  # ORB ran in the decode stage exactly when asked
    assert (
        evaluate(["--output", str(out), "--gt", str(gt_path), "--kind", "track", "--out", str(tmp_path / "track.json")])
        == 0
    )
    res = json.loads((tmp_path / "track.json").read_text())
    stats = res["tracking"]["overall"]
    print(f"oracle Bonn tracking ({mode}, {correspondences}):", json.dumps(stats))
    assert stats["IDF1"] >= 0.95 and stats["MOTA"] >= 0.95, stats
    if correspondences == "orb":
        from benchmarks.poseflow import decode_frames
        from models.correspondences import OrbParams, video_correspondences
        from models.poseflow import track_video
        from store.tables import read_poses

        poses = read_poses(str(out)).to_pandas().sort_values(["frame_index", "person_index"])
        assert poses["frame_index"].nunique() == 41  # every frame has people: pairs always relate adjacent frames
        frames = [g for _, g in poses.groupby("frame_index")]
        kp = [np.stack(g["keypoints"].map(lambda k: np.stack(k)).to_list()).astype(np.float64) for g in frames]
        ks = [np.stack(g["keypoint_scores"].map(np.asarray).to_list()).astype(np.float64) for g in frames]
        sc = [g["pose_score"].to_numpy(np.float64) for g in frames]
        pairs = video_correspondences(decode_frames(video), OrbParams(matcher="windowed"))
        expected = track_video(kp, ks, sc, (960, 540), correspondences=pairs, params=params)
        np.testing.assert_array_equal(
            np.concatenate([g["track_id"].to_numpy() for g in frames]), np.concatenate(expected)
        )
