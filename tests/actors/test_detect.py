"""The detection actor, called directly on hand-built batches (no Ray): one row per frame with its persons' SPPE
crops and crop boxes, identity columns passed through, frames without persons and bad frames kept as rows, inputs
untouched, random weights marked."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

import actors.detect
from actors.detect import FRAME_OUTPUT_COLUMNS, Detector, DetectorConfig
from models.detectors import DETECTOR_ARCHS
from models.transforms import boxes_to_center_scale, center_scale_to_boxes, crop_images

NAMES = ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg"]


def _object_column(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


@pytest.fixture(scope="module")
def coco_batch(shared_data: Path) -> dict[str, np.ndarray]:
    """Four COCO images of different sizes, one frame the detections file does not know, and one bad frame."""
    frames = [cv2.cvtColor(cv2.imread(str(shared_data / "coco" / n)), cv2.COLOR_BGR2RGB) for n in NAMES]
    frames += [np.full((120, 200, 3), 90, np.uint8), np.zeros((50, 60), np.uint8)]
    for f in frames:
        f.flags.writeable = False  # Ray may hand zero-copy, read-only views
    batch = {
        "frame": _object_column(frames),
        "path": np.array([f"coco/{n}" for n in NAMES] + ["other/unknown.jpg", "other/gray.jpg"]),
        "frame_index": np.arange(10, 16, dtype=np.int64),
    }
    for v in batch.values():
        v.flags.writeable = False
    return batch


@pytest.fixture(scope="module")
def det_json(shared_data: Path) -> str:
    return str(shared_data / "coco" / "test_coco_det_AP_H_56.json")


def _precomputed(det_json: str, **kw) -> Detector:
    return Detector(
        DetectorConfig(arch="precomputed", weights=det_json, key_column="path", max_persons=4, device="cpu", **kw)
    )


def test_frame_rows_crops_and_identity_columns(coco_batch, det_json):
    snapshot = {k: [np.array(x, copy=True) for x in v] for k, v in coco_batch.items()}
    actor = _precomputed(det_json)
    out = actor(coco_batch)
    assert set(out) == {"path", "frame_index", *FRAME_OUTPUT_COLUMNS}  # never the frame itself
    # Inputs untouched (they were read-only; a write would have raised, and the contents are the same).
    assert all(np.array_equal(a, b) for k, v in coco_batch.items() for a, b in zip(v, snapshot[k]))

    n = len(out["frame_index"])
    assert n == 4 + 1 + 1  # four COCO images (four persons each), the unknown frame, the bad frame: one row each
    assert all(len(v) == n for v in out.values())
    for f in range(n):
        p = out["n_persons"][f]
        assert out["crops"][f].shape == (p, 256, 192, 3) and out["crops"][f].dtype == np.uint8
        assert out["crop_boxes_xyxy"][f].shape == (p, 4) and out["crop_boxes_xyxy"][f].dtype == np.float64
        assert out["boxes_xyxy"][f].shape == (p, 4) and out["boxes_xyxy"][f].dtype == np.float32
        assert out["box_scores"][f].shape == (p,) and out["box_scores"][f].dtype == np.float32
    assert out["frame_index"].dtype == np.int64 and out["path"].dtype == coco_batch["path"].dtype
    np.testing.assert_array_equal(out["frame_index"], np.arange(10, 16))
    np.testing.assert_array_equal(out["n_persons"], [4, 4, 4, 4, 0, 0])
    sha = hashlib.sha256(Path(det_json).read_bytes()).hexdigest()
    assert set(out["detector_weights"]) == {sha} and not out["random_weights"].any()
    assert set(out["detector"]) == {"precomputed"}

    # Persons: the detector's boxes; the crop box is AlphaPose's centre/scale box; crops bit-exact with OpenCV.
    expected = actor.detector([coco_batch["frame"][i] for i in range(4)], keys=list(coco_batch["path"][:4]))
    for f in range(4):
        frame = coco_batch["frame"][f]
        np.testing.assert_array_equal(out["boxes_xyxy"][f], expected[f].boxes_xyxy)
        np.testing.assert_array_equal(out["box_scores"][f], expected[f].scores)
        crop_boxes = center_scale_to_boxes(*boxes_to_center_scale(expected[f].boxes_xyxy))
        np.testing.assert_array_equal(out["crop_boxes_xyxy"][f], crop_boxes)
        np.testing.assert_array_equal(out["crops"][f], crop_images([frame], np.zeros(4, int), crop_boxes))
        assert (out["frame_width"][f], out["frame_height"][f]) == frame.shape[1::-1]
        assert out["error"][f] == "" and out["stage"][f] == ""

    # The unknown frame keeps its row without persons; the bad frame its row with an error naming the problem.
    empty, bad = n - 2, n - 1
    assert out["path"][empty] == "other/unknown.jpg" and out["error"][empty] == ""
    assert (out["frame_width"][empty], out["frame_height"][empty]) == (200, 120)
    assert len(out["crops"][empty]) == 0 and len(out["boxes_xyxy"][empty]) == 0 and len(out["box_scores"][empty]) == 0
    assert out["path"][bad] == "other/gray.jpg" and out["stage"][bad] == "detect"
    assert "bad frame" in out["error"][bad] and "(50, 60)" in out["error"][bad]


def test_frame_rows_pass_identity_through_and_keep_empty_frames(coco_batch, det_json):
    per_frame = _precomputed(det_json)(coco_batch)
    assert set(per_frame) == {"path", "frame_index", *FRAME_OUTPUT_COLUMNS}
    assert len(per_frame["crops"]) == 6
    np.testing.assert_array_equal(per_frame["n_persons"], [4, 4, 4, 4, 0, 0])
    assert per_frame["frame_index"] is coco_batch["frame_index"]  # passed through as given
    # The frames' crops and crop boxes, concatenated, are the 16 persons' in frame order.
    crop_boxes = np.concatenate(list(per_frame["crop_boxes_xyxy"][:4]))
    assert crop_boxes.shape == (16, 4)
    np.testing.assert_array_equal(
        np.concatenate(list(per_frame["crops"][:4])),
        np.concatenate(
            [crop_images([coco_batch["frame"][f]], np.zeros(4, int), crop_boxes[4 * f : 4 * f + 4]) for f in range(4)]
        ),
    )
    assert per_frame["crops"][4].shape == (0, 256, 192, 3) and per_frame["boxes_xyxy"][5].shape == (0, 4)
    assert list(per_frame["stage"]) == ["", "", "", "", "", "detect"]


def test_torch_crop_path_agrees_with_opencv(coco_batch, det_json):
    cv = np.concatenate(list(_precomputed(det_json)(coco_batch)["crops"])).astype(int)
    tt = np.concatenate(list(_precomputed(det_json, crop_backend="torch")(coco_batch)["crops"])).astype(int)
    diff = np.abs(cv - tt)
    assert (diff <= 1).mean() >= 0.99  # models.transforms.crop_images_torch's documented agreement


def test_video_frames_with_random_weights_are_marked(shared_data):
    with av.open(str(shared_data / "videos" / "mmpose_demo.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(3), container.decode(video=0))]
    frames = np.stack([cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA) for f in decoded])
    frames.flags.writeable = False
    batch = {"frame": frames, "video_id": np.array(["mmpose_demo"] * 3), "frame_index": np.arange(3)}
    actor = Detector(DetectorConfig(arch="yolov3_spp", random_weights=True, input_size=160, device="cpu"))
    with torch.no_grad():  # make the random network call many things "person" (objectness and class 0 biases)
        for i in (88, 100, 112):
            actor.detector.model.layers[i].conv.bias.view(3, 85)[:, 4:6] += 8.0
    out = actor(batch)
    assert out["random_weights"].all() and set(out["detector_weights"]) == {"random"}
    assert set(out["video_id"]) == {"mmpose_demo"}
    counts = np.array([len(c) for c in out["crops"]])
    assert counts.sum() == len(np.concatenate(list(out["crops"]))) > 3
    np.testing.assert_array_equal(out["frame_index"], np.arange(3))
    for fi in range(3):
        assert out["n_persons"][fi] == counts[fi] == len(out["boxes_xyxy"][fi])
    b = np.concatenate(list(out["boxes_xyxy"]))
    assert np.all((b[:, 0] >= 0) & (b[:, 2] <= 320) & (b[:, 1] >= 0) & (b[:, 3] <= 180))


def test_empty_batch():
    actor = Detector(DetectorConfig(arch="ssdlite320_mobilenet_v3_large", random_weights=True, device="cpu"))
    out = actor({"frame": np.zeros((0, 32, 32, 3), np.uint8), "frame_index": np.zeros(0, np.int64)})
    assert all(len(v) == 0 for v in out.values())
    assert set(out) == {"frame_index", *FRAME_OUTPUT_COLUMNS}


def test_config_is_checked_before_any_work():
    with pytest.raises(ValueError, match="random_weights=True"):
        DetectorConfig()
    with pytest.raises(ValueError) as e:
        DetectorConfig(arch="detr", random_weights=True)
    assert all(name in str(e.value) for name in DETECTOR_ARCHS)
    with pytest.raises(ValueError, match="key_column"):
        DetectorConfig(arch="precomputed", weights="dets.json")
    with pytest.raises(ValueError, match="contradict"):
        DetectorConfig(weights="w.pth", random_weights=True)
    with pytest.raises(TypeError, match="layout"):  # one row per frame is the only layout
        DetectorConfig(random_weights=True, layout="person")


def test_our_bugs_raise_while_bad_frames_do_not(coco_batch, det_json, monkeypatch):
    actor = _precomputed(det_json)
    with pytest.raises(ValueError, match="no frame column 'frame'"):
        actor({"image": coco_batch["frame"]})
    with pytest.raises(ValueError, match="collide"):
        actor({**coco_batch, "boxes_xyxy": np.zeros((6, 4))})

    def broken(frames, keys):
        raise RuntimeError("bug in the detector")

    monkeypatch.setattr(actor.detector, "_detect", broken)
    with pytest.raises(RuntimeError, match="bug in the detector"):
        actor(coco_batch)


def test_module_example_runs():
    assert doctest.testmod(actors.detect, raise_on_error=True).attempted >= 3


def test_crops_follow_the_pose_networks_spec(coco_batch, det_json):
    """BlazePose's square spec gives 256×256 crops of the square region around each box, cut exactly as
    ``crop_images`` cuts them."""
    from models.blazepose import BLAZEPOSE_CROP

    actor = Detector(
        DetectorConfig(arch="precomputed", weights=det_json, key_column="path", max_persons=4, device="cpu"),
        crop=BLAZEPOSE_CROP,
    )
    out = actor(coco_batch)
    crops, boxes, crop_boxes = out["crops"][2], out["boxes_xyxy"][2], out["crop_boxes_xyxy"][2]
    assert crops.shape == (len(boxes), 256, 256, 3) and len(boxes) > 0
    side = 1.25 * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    np.testing.assert_allclose(crop_boxes[:, 2] - crop_boxes[:, 0], side, rtol=1e-5)
    np.testing.assert_allclose(crop_boxes[:, 3] - crop_boxes[:, 1], side, rtol=1e-5)
    frame = coco_batch["frame"][2]
    np.testing.assert_array_equal(crops, crop_images([frame], np.zeros(len(boxes), int), crop_boxes, (256, 256)))


def test_detector_keypoints_replace_crops(coco_batch):
    """``crop=None, keypoints=True`` (``sppe.arch=detector``): no crops, the YOLO pose checkpoint's own keypoints
    aligned with its boxes; a checkpoint without keypoints is refused."""
    from models.zoo import WeightsMissingError, weights_file

    try:
        weights = weights_file("yolo11n_pose")
    except WeightsMissingError as e:
        pytest.skip(str(e))
    actor = Detector(DetectorConfig(arch="yolo", weights=weights, device="cpu"), crop=None, keypoints=True)
    out = actor(coco_batch)
    assert "crops" not in out and "crop_boxes_xyxy" not in out
    for n, kp, ks, b in zip(out["n_persons"], out["keypoints"], out["keypoint_scores"], out["boxes_xyxy"]):
        assert kp.shape == (n, 17, 2) and ks.shape == (n, 17) and len(b) == n
        inside = (kp[..., 0] >= b[:, None, 0] - 40) & (kp[..., 0] <= b[:, None, 2] + 40)
        assert inside[ks > 0.5].all()  # confident keypoints lie on their own person's box
    assert out["n_persons"][0] == 1 and out["error"][5]  # the skier; the bad frame keeps its error row
    with pytest.raises(ValueError, match="predicts no keypoints"):
        Detector(
            DetectorConfig(arch="ssdlite320_mobilenet_v3_large", random_weights=True, device="cpu"),
            crop=None,
            keypoints=True,
        )


def test_crop_is_alphaposes_from_the_unclamped_box(tmp_path):
    """A box crossing the frame's edge is reported clamped (``boxes_xyxy``) but cropped as AlphaPose crops it, from
    the box before clamping; a box entirely outside the frame is no person; a random network on a 1×1 frame finds
    nobody."""
    import json

    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    unclamped = np.array([[-30.0, 10.0, 50.0, 110.0]])
    det_json = tmp_path / "dets.json"
    det_json.write_text(
        json.dumps(
            [
                {"image_id": 3, "category_id": 1, "bbox": [-30.0, 10.0, 80.0, 100.0], "score": 0.9},
                {"image_id": 3, "category_id": 1, "bbox": [200.0, 10.0, 40.0, 100.0], "score": 0.95},  # outside
            ]
        )
    )
    cfg = DetectorConfig(arch="precomputed", weights=str(det_json), key_column="path", device="cpu")
    for backend in ("opencv", "torch"):
        actor = Detector(dataclasses.replace(cfg, crop_backend=backend))
        out = actor({"frame": frame[None], "path": np.array(["3.jpg"])})
        assert out["n_persons"].tolist() == [1]
        np.testing.assert_array_equal(out["boxes_xyxy"][0], [[0, 10, 50, 110]])
        crop_box = center_scale_to_boxes(*boxes_to_center_scale(unclamped))
        np.testing.assert_allclose(out["crop_boxes_xyxy"][0], crop_box, rtol=0, atol=1e-9)
        if backend == "opencv":
            np.testing.assert_array_equal(out["crops"][0], crop_images([frame], np.zeros(1, int), crop_box))

    random_actor = Detector(
        DetectorConfig(arch="yolo", random_weights=True, input_size=64, score_threshold=0.0, device="cpu")
    )
    out = random_actor({"frame": np.zeros((2, 1, 1, 3), np.uint8), "frame_index": np.arange(2)})
    assert out["n_persons"].tolist() == [0, 0] and [len(c) for c in out["crops"]] == [0, 0]


def test_a_precomputed_detector_loads_no_torch(tmp_path, coco_batch, det_json):
    """The pipeline's detection stage with precomputed boxes (as ``actor_stage`` builds it: threads, device "auto"
    in a Ray worker given no GPU, stubbed here) only looks boxes up and cuts crops with OpenCV, so its process never
    pays torch's import (1.0–1.9 s, issue 13); its crops are the ones this process (which has torch) cuts."""
    frames = np.stack([np.asarray(coco_batch["frame"][0])] * 2)
    np.save(tmp_path / "frames.npy", frames)
    code = f"""
import sys
import numpy as np
import ray
ray.is_initialized, ray.get_gpu_ids = lambda: True, lambda: []  # a Ray worker without a GPU
from actors.detect import Detector, DetectorConfig
det = Detector(DetectorConfig(arch="precomputed", weights={det_json!r}, key_column="path", max_persons=4), threads=1)
out = det({{"frame": np.load({str(tmp_path / "frames.npy")!r}), "path": np.array(["coco/{NAMES[0]}"] * 2)}})
np.save({str(tmp_path / "crops.npy")!r}, np.concatenate(list(out["crops"])))
print("torch" in sys.modules, det.crop_backend)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "opencv"]
    here = _precomputed(det_json)({"frame": frames, "path": np.array([f"coco/{NAMES[0]}"] * 2)})
    expected = np.concatenate(list(here["crops"]))
    assert len(expected) == 8
    np.testing.assert_array_equal(np.load(tmp_path / "crops.npy"), expected)
