"""The person-detector interface on real frames: every architecture builds (random weights, explicitly), runs on
frames of different sizes in one batch, returns float32 boxes inside each frame with the thresholds applied, and
marks random-weight outputs; weights files load weights-only with their sha256 recorded; precomputed detections
come through the same interface.

Random networks rarely call anything a person, so ``_favour_person`` raises the person logits' biases: the boxes
are still random, but there are many of them, which is what threshold and clipping tests need. Frames are real
images and video frames scaled to ~150–300 px, and networks run at small input sizes, to keep the suite fast.
"""

from __future__ import annotations

import doctest
import hashlib
import json
import os
import pickle
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from torch import nn

import models.detectors
import models.person_boxes
from models.checkpoints import CheckpointError
from models.darknet import (
    Darknet,
    YoloLayer,
    letterbox_to_image,
    read_darknet_cfg,
    write_darknet_weights,
    yolo_person_boxes,
)
from models.detectors import (
    DETECTOR_ARCHS,
    TORCHVISION_ARCHS,
    PersonDetector,
    TorchvisionPersonDetector,
    YoloPersonDetector,
    build_detector,
    torchvision_weights_url,
)

FIXTURES = Path(__file__).parent / "fixtures"
NETWORK_ARCHS = [*TORCHVISION_ARCHS, "yolov3_spp"]
MIN_AREA = 150.0
MAX_PERSONS = 3


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def frames(shared_data: Path) -> list[np.ndarray]:
    """Three real frames of different sizes and aspect ratios, read-only like Ray's zero-copy batches."""
    with av.open(str(shared_data / "videos" / "mmpose_demo.mp4")) as container:
        video = next(container.decode(video=0)).to_ndarray(format="rgb24")
    out = [
        cv2.resize(_rgb(shared_data / "coco" / "000000000785.jpg"), (240, 160), interpolation=cv2.INTER_AREA),
        cv2.resize(video, (288, 162), interpolation=cv2.INTER_AREA),
        cv2.resize(_rgb(shared_data / "alphapose" / "2.jpg"), (150, 100), interpolation=cv2.INTER_AREA),
    ]
    for f in out:
        f.flags.writeable = False
    return out


def _fast_kwargs(arch: str) -> dict:
    kw: dict = {}
    if arch != "ssdlite320_mobilenet_v3_large":
        kw["input_size"] = 160  # torchvision min_size / YOLO letterbox side
    if arch.startswith("fasterrcnn"):
        kw["rpn_proposals"] = 50  # the box head runs once per proposal: 1000 by default
    return kw


def _favour_person(det) -> None:
    """Bias the classifier towards "person" (COCO-91 label 1 / COCO-80 class 0, and YOLO objectness)."""
    with torch.no_grad():
        if isinstance(det, YoloPersonDetector):
            for i, layer in enumerate(det.model.spec.layers):
                if isinstance(layer, YoloLayer):
                    bias = det.model.layers[i - 1].conv.bias.view(len(layer.anchors), -1)
                    bias[:, 4] += 8.0  # objectness
                    bias[:, 5] += 8.0  # class 0
            return
        for name, m in det.model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None and ("cls" in name or "classif" in name):
                if m.bias.numel() % 91 == 0:
                    m.bias[torch.arange(m.bias.numel()) % 91 == 1] += 10.0


def _reference(det, frames) -> list[tuple[np.ndarray, np.ndarray]]:
    """The interface's contract written out on the model's bare forward: person only, clamp, score > threshold,
    area ≥ MIN_AREA, width and height ≥ min_box_side, highest MAX_PERSONS scores."""
    with torch.inference_mode():
        if isinstance(det, TorchvisionPersonDetector):
            raw = [
                (p["boxes"][p["labels"] == 1].numpy(), p["scores"][p["labels"] == 1].numpy())
                for p in det.forward_model(det.prepare(frames))
            ]
        else:
            x, geos = det.prepare(frames)
            rows = det.forward_model(x)
            raw = []
            for i, geo in enumerate(geos):
                b, s = yolo_person_boxes(rows[i], confidence=0.1, nms_iou=0.6)
                raw.append((letterbox_to_image(b, geo), s))
    out = []
    for (b, s), f in zip(raw, frames):
        h, w = f.shape[:2]
        b = np.stack([b[:, 0].clip(0, w), b[:, 1].clip(0, h), b[:, 2].clip(0, w), b[:, 3].clip(0, h)], 1)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        side = det.min_box_side
        keep = (s > det.score_threshold) & (bw * bh >= MIN_AREA) & (bw >= side) & (bh >= side)
        order = np.argsort(-s[keep], kind="stable")
        out.append((b[keep][order], s[keep][order], int(keep.sum())))
    return out


@pytest.mark.parametrize("arch", NETWORK_ARCHS)
def test_every_detector_on_real_frames_of_different_sizes(arch, frames):
    det = build_detector(
        arch, random_weights=True, max_persons=MAX_PERSONS, min_box_area=MIN_AREA, **_fast_kwargs(arch)
    )
    _favour_person(det)
    snapshot = [f.copy() for f in frames]
    out = det(frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, snapshot))  # inputs untouched
    assert len(out) == len(frames)
    expected = _reference(det, frames)
    for d, f, (ref_boxes, ref_scores, n_before_cap) in zip(out, frames, expected):
        h, w = f.shape[:2]
        assert d.frame_size_wh == (w, h)
        assert d.weights_id == "random" and d.random_weights
        assert d.boxes_xyxy.dtype == np.float32 and d.scores.dtype == np.float32
        assert d.boxes_xyxy.shape == (len(d), 4) and d.scores.shape == (len(d),)
        b = d.boxes_xyxy
        assert np.all((b[:, 0] >= 0) & (b[:, 0] <= b[:, 2]) & (b[:, 2] <= w))
        assert np.all((b[:, 1] >= 0) & (b[:, 1] <= b[:, 3]) & (b[:, 3] <= h))
        assert np.all((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) >= MIN_AREA)
        assert len(d) == min(MAX_PERSONS, n_before_cap)
        assert np.all(np.diff(d.scores) <= 0)
        np.testing.assert_allclose(b, ref_boxes[:MAX_PERSONS], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(d.scores, ref_scores[:MAX_PERSONS], rtol=1e-5)
    # The thresholds were exercised, not vacuously met: some frame had more persons than the cap.
    assert max(n for _, _, n in expected) > MAX_PERSONS


def test_random_weights_are_seeded_and_leave_the_global_rng_alone(frames):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_detector("ssdlite320_mobilenet_v3_large", random_weights=True)
    assert torch.equal(torch.rand(3), expected_next)
    b = build_detector("ssdlite320_mobilenet_v3_large", random_weights=True)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", list(DETECTOR_ARCHS))
def test_no_weights_is_refused_before_any_work(arch, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(models.detectors, "_torchvision_detector", no_build)
    monkeypatch.setattr(models.detectors, "Darknet", no_build)
    monkeypatch.setattr(models.person_boxes, "load_detections", no_build)
    with pytest.raises(ValueError, match="random_weights=True|needs weights=PATH"):
        build_detector(arch)


def test_unknown_arch_and_bad_options():
    with pytest.raises(ValueError) as e:
        build_detector("yolov8")
    assert all(name in str(e.value) for name in DETECTOR_ARCHS)
    cases = [
        (dict(arch="yolov3_spp", weights="x.weights", random_weights=True), "contradict"),
        (dict(arch="yolov3_spp", random_weights=True, input_size=100), "multiple of 32"),
        (dict(arch="yolov3_spp", random_weights=True, rpn_proposals=10), "does not use rpn_proposals"),
        (dict(arch="ssdlite320_mobilenet_v3_large", random_weights=True, input_size=160), "fixed 320"),
        (dict(arch="fcos_resnet50_fpn", random_weights=True, rpn_proposals=10), "Faster R-CNN archs only"),
        (dict(arch="fcos_resnet50_fpn", random_weights=True, nms_iou=0.0), "nms_iou"),
        (dict(arch="fcos_resnet50_fpn", random_weights=True, max_persons=0), "max_persons"),
        (dict(arch="yolo", random_weights=True, min_box_side=-1.0), "min_box_side"),
        (dict(arch="precomputed", random_weights=True), "no weights to randomise"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            build_detector(**kwargs)


def test_bad_frames_raise_naming_the_frame(frames):
    det = build_detector("ssdlite320_mobilenet_v3_large", random_weights=True)
    with pytest.raises(TypeError, match="frame 1: frame must be uint8, got float32"):
        det([frames[0], frames[1].astype(np.float32)])
    with pytest.raises(ValueError, match=r"frame 0: frame must be \[H, W, 3\]"):
        det([frames[0][..., 0]])
    assert det([]) == []


def test_torchvision_state_dict_file_loads_weights_only_with_sha256(tmp_path, frames):
    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    random_det = build_detector(arch, random_weights=True)
    _favour_person(random_det)
    path = tmp_path / "frcnn_mnv3_320.pth"
    torch.save(random_det.model.state_dict(), path)
    # torchvision builds the COCO-trained model with FrozenBatchNorm2d (no num_batches_tracked keys) in MobileNet.
    assert not any(k.endswith("num_batches_tracked") for k in random_det.model.state_dict())
    det = build_detector(arch, weights=str(path))
    assert det.weights_id == hashlib.sha256(path.read_bytes()).hexdigest() and not det.random_weights
    out, ref = det(frames), random_det(frames)
    assert sum(len(o) for o in out) > 0
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        assert a.weights_id == det.weights_id and b.weights_id == "random"


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": _Payload(str(marker))}, protocol=2))
    with pytest.raises(CheckpointError, match="refused to load"):
        build_detector("ssdlite320_mobilenet_v3_large", weights=str(path))
    assert not marker.exists()


def test_official_weights_are_hash_checked_and_not_downloaded_when_cached(tmp_path, monkeypatch):
    arch = "ssdlite320_mobilenet_v3_large"
    url = torchvision_weights_url(arch)
    assert url.startswith("https://download.pytorch.org/models/") and url.endswith(".pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    torch.save(build_detector(arch, random_weights=True).model.state_dict(), cached)  # not the official bytes
    with pytest.raises(CheckpointError, match="does not start with .* the hash in the official file name"):
        build_detector(arch, weights="torchvision")
    with pytest.raises(ValueError, match="has no torchvision weights"):
        torchvision_weights_url("yolov3_spp")


def test_darknet_weights_through_the_builder(tmp_path, frames):
    cfg = str(FIXTURES / "tiny-darknet.cfg")
    net = Darknet(read_darknet_cfg(cfg))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1, generator=torch.Generator().manual_seed(p.numel()))
    path = tmp_path / "tiny.weights"
    digest = write_darknet_weights(net, str(path))
    det = build_detector("yolov3_spp", weights=str(path), darknet_cfg=cfg, input_size=64)
    assert det.weights_id == digest and det.model.spec.source.endswith("tiny-darknet.cfg")
    a, b = net.state_dict(), det.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(det(frames)) == 3


def test_precomputed_detector_on_coco_images(shared_data):
    det_json = shared_data / "coco" / "test_coco_det_AP_H_56.json"
    names = {785: "000000000785.jpg", 40083: "000000040083.jpg", 196141: "000000196141.jpg", 197388: "000000197388.jpg"}
    images = [_rgb(shared_data / "coco" / n) for n in names.values()]
    expected: dict[int, list] = {}
    for r in json.loads(det_json.read_text()):
        x, y, w, h = r["bbox"]
        expected.setdefault(r["image_id"], []).append(([x, y, x + w, y + h], r["score"]))
    det = build_detector("precomputed", weights=str(det_json))
    assert det.weights_id == hashlib.sha256(det_json.read_bytes()).hexdigest() and not det.random_weights
    out = det(images, keys=list(names.values()))
    assert [len(o) for o in out] == [22, 26, 33, 37]
    clamped = 0
    for o, image_id, img in zip(out, names, images):
        h, w = img.shape[:2]
        boxes = np.asarray([b for b, _ in expected[image_id]], np.float32)
        inside = boxes.copy()
        inside[:, [0, 2]] = inside[:, [0, 2]].clip(0, w)
        inside[:, [1, 3]] = inside[:, [1, 3]].clip(0, h)
        clamped += int((inside != boxes).any(axis=1).sum())
        np.testing.assert_array_equal(o.boxes_xyxy, inside)  # the file's boxes, clamped to the frame
        np.testing.assert_array_equal(o.scores, np.float32([s for _, s in expected[image_id]]))
    assert clamped == 2  # two boxes of image 197388 end 0.68 px beyond x = 640
    limited = build_detector(
        "precomputed", weights=str(det_json), score_threshold=0.5, max_persons=4, min_box_area=2000
    )(images, keys=list(names))
    for o in limited:
        assert len(o) <= 4 and np.all(o.scores > 0.5)
        assert np.all((o.boxes_xyxy[:, 2] - o.boxes_xyxy[:, 0]) * (o.boxes_xyxy[:, 3] - o.boxes_xyxy[:, 1]) >= 2000)
    with pytest.raises(ValueError, match="need a key"):
        det(images)


class _FixedBoxes(PersonDetector):
    """Returns the same boxes for every frame (scores descending with the row)."""

    def __init__(self, boxes, **kw) -> None:
        kw = {"arch": "fake", "weights_id": "x", "device": "cpu", "score_threshold": 0.0, "min_box_area": 0.0} | kw
        super().__init__(max_persons=None, **kw)
        self.boxes = np.asarray(boxes, np.float32)

    def _detect(self, frames, keys):
        return [(self.boxes, np.linspace(0.9, 0.5, len(self.boxes), dtype=np.float32)) for _ in frames]


def test_degenerate_boxes_are_no_persons_and_raw_boxes_stay_aligned():
    boxes = [
        [300.0, 10.0, 360.0, 90.0],  # entirely right of the 200×100 frame: clamped to width 0
        [-30.0, 10.0, 50.0, 90.0],  # crosses the left edge: kept, reported clamped
        [-50.0, -40.0, -10.0, -5.0],  # above-left of the frame: clamped to (0, 0, 0, 0)
        [20.0, 10.0, 21.5, 90.0],  # a 1.5-pixel sliver
        [150.0, 20.0, 190.0, 130.0],  # crosses the bottom edge
        [10.0, 10.0, 10.0, np.inf],  # non-finite
    ]
    out = _FixedBoxes(boxes)([np.zeros((100, 200, 3), np.uint8)])[0]
    assert len(out) == 2
    np.testing.assert_array_equal(out.scores, np.linspace(0.9, 0.5, 6, dtype=np.float32)[[1, 4]])
    np.testing.assert_array_equal(out.boxes_xyxy, [[0, 10, 50, 90], [150, 20, 190, 100]])
    np.testing.assert_array_equal(out.boxes_raw_xyxy, np.float32([boxes[1], boxes[4]]))
    np.testing.assert_array_equal(out.crop_source_boxes, out.boxes_raw_xyxy)
    assert out.boxes_raw_xyxy.dtype == np.float32 and out.boxes_raw_xyxy.flags.c_contiguous
    # min_box_side is a threshold like min_box_area: 0 keeps slivers (not zero-area boxes, given min_box_area > 0)
    loose = _FixedBoxes(boxes, min_box_side=0.0, min_box_area=1.0)([np.zeros((100, 200, 3), np.uint8)])[0]
    assert len(loose) == 3 and loose.boxes_raw_xyxy.tolist()[1] == boxes[3]
    # default: 2 pixels
    assert _FixedBoxes(boxes).min_box_side == 2.0 == build_detector("yolo", random_weights=True).min_box_side


def test_precomputed_box_outside_the_frame_is_no_person(tmp_path):
    det_json = tmp_path / "dets.json"
    records = [
        {"image_id": 7, "category_id": 1, "bbox": [700.0, 10.0, 40.0, 80.0], "score": 0.99},  # right of the frame
        {"image_id": 7, "category_id": 1, "bbox": [-30.0, 10.0, 80.0, 80.0], "score": 0.8},  # crosses the edge
    ]
    det_json.write_text(json.dumps(records))
    (out,) = build_detector("precomputed", weights=str(det_json))([np.zeros((120, 640, 3), np.uint8)], keys=[7])
    assert len(out) == 1 and out.scores.tolist() == [pytest.approx(0.8)]
    np.testing.assert_array_equal(out.boxes_xyxy, [[0, 10, 50, 90]])
    np.testing.assert_array_equal(out.boxes_raw_xyxy, [[-30, 10, 50, 90]])


def test_random_weights_on_a_1x1_frame_find_nobody():
    # score_threshold=0 lets every anchor of a random network through: on a 1×1 frame all are clamped to ≤ 1 px.
    det = build_detector("yolo", random_weights=True, input_size=64, score_threshold=0.0)
    assert len(det([np.zeros((1, 1, 3), np.uint8)])[0]) == 0
    # ...which is the side rule at work, not an empty network output
    det.min_box_side = 0.0
    assert len(det([np.zeros((1, 1, 3), np.uint8)])[0]) > 0


def test_module_example_runs():
    assert doctest.testmod(models.detectors, raise_on_error=True).attempted >= 3
    assert doctest.testmod(models.person_boxes, raise_on_error=True).attempted >= 6
