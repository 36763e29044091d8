"""Ultralytics YOLO11/YOLOv8 in plain PyTorch: parity with Ultralytics' own predictions on real images, a pickle
that carries code stays inert, strict loading, random-weight builds, and the letterbox / NMS / keypoint plumbing.

The reference (``fixtures/yolo11n_pose_reference.json``) was written once by ``fixtures/make_yolo_reference.py``
with the ``ultralytics`` package in a separate venv (its docstring says how to regenerate it); this suite never
imports ``ultralytics``. Measured at generation (ultralytics 8.4.190, torch 2.14.1, CPU): max |Δ| boxes 1.2e-4 px,
scores 6.5e-7, keypoints 1.4e-4 px, keypoint scores 1.5e-6 (the fixture is rounded to 1e-4 px / 1e-6), 32 persons
in 10 images, identical counts.
"""

from __future__ import annotations

import doctest
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import models.safe_unpickle
import models.ultralytics
from models.checkpoints import CheckpointError, load_state_dict_strict
from models.detectors import PersonDetector, build_detector
from models.safe_unpickle import PickledObject, UnsafeCheckpointError, iter_pickled_objects, read_torch_pickle
from models.ultralytics import (
    UltralyticsCheckpointError,
    YoloNet,
    boxes_to_frame,
    keypoints_to_frame,
    letterbox,
    letterbox_geometry,
    non_max_suppression,
    parse_yolo_yaml,
    read_ultralytics_checkpoint,
    yolo11n_pose_yaml,
)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "yolo11n_pose_reference.json"
WEIGHTS_NAME = "yolo11n-pose.pt"
WEIGHTS_SHA256 = "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"


@pytest.fixture(scope="module")
def weights_path() -> Path:
    folder = Path(os.environ.get("RAYPOSE_WEIGHTS_DIR") or REPO / "weights")
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        pytest.skip(f"{path} not found: run `make weights`")
    return path


@pytest.fixture(scope="module")
def checkpoint(weights_path: Path):
    return read_ultralytics_checkpoint(str(weights_path))


@pytest.fixture(scope="module")
def detector(weights_path: Path):
    return build_detector("yolo", weights=str(weights_path))


# ----------------------------------------------------------------------------------------------------- parity


def test_predictions_match_ultralytics_on_real_images(detector):
    if not DATA.is_dir():
        pytest.skip(f"real test data not found at {DATA} (clone the project beside shared/)")
    ref = json.loads(REFERENCE.read_text())
    assert ref["weights_sha256"] == detector.weights_id == WEIGHTS_SHA256
    args = ref["predict_args"]
    assert (args["imgsz"], args["conf"], args["iou"], args["max_det"], args["rect"]) == (
        detector.input_size,
        detector.score_threshold,
        detector.nms_iou,
        detector.max_det,
        False,
    )
    frames = []
    for im in ref["images"]:
        bgr = cv2.imread(str(DATA / im["image"]))
        assert bgr is not None, im["image"]
        # Same decoded pixels as Ultralytics saw (its opencv-python vs our headless build): else the comparison
        # below would measure JPEG decoders, not networks.
        assert hashlib.sha256(bgr.tobytes()).hexdigest() == im["pixels_sha256"], im["image"]
        frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frame.flags.writeable = False
        frames.append(frame)
    blank = np.full((90, 120, 3), 114, np.uint8)  # no person: still [0, 17, …] keypoint arrays
    *outs, empty = detector([*frames, blank])
    assert len(empty) == 0 and empty.keypoints.shape == (0, 17, 2) and empty.keypoint_scores.shape == (0, 17)
    worst = dict(box=0.0, score=0.0, kp=0.0, kp_score=0.0)
    for im, out in zip(ref["images"], outs):
        n = len(im["scores"])
        assert len(out) == n, f"{im['image']}: {len(out)} persons, Ultralytics {n}"
        assert out.frame_size_wh == tuple(im["size_wh"])
        assert out.boxes_xyxy.dtype == out.keypoints.dtype == out.keypoint_scores.dtype == np.float32
        assert out.keypoints.shape == (n, 17, 2) and out.keypoint_scores.shape == (n, 17)
        if n == 0:
            continue
        worst["box"] = max(worst["box"], float(np.abs(out.boxes_xyxy - np.array(im["boxes_xyxy"])).max()))
        worst["score"] = max(worst["score"], float(np.abs(out.scores - np.array(im["scores"])).max()))
        worst["kp"] = max(worst["kp"], float(np.abs(out.keypoints - np.array(im["keypoints_xy"])).max()))
        worst["kp_score"] = max(
            worst["kp_score"], float(np.abs(out.keypoint_scores - np.array(im["keypoint_scores"])).max())
        )
    assert sum(len(o) for o in outs) == 32
    assert worst["box"] <= 0.5 and worst["kp"] <= 0.5, worst
    assert worst["score"] <= 1e-3 and worst["kp_score"] <= 1e-3, worst


def test_detector_marks_and_describes_itself(detector, checkpoint):
    assert detector.arch == "yolo" and not detector.random_weights and detector.keypoint_set == "coco17"
    assert checkpoint.sha256 == WEIGHTS_SHA256 and checkpoint.license.startswith("AGPL-3.0")
    assert (checkpoint.nc, checkpoint.kpt_shape, checkpoint.names, checkpoint.bn_eps) == (1, (17, 3), ("person",), 1e-3)
    assert detector([]) == []


# ---------------------------------------------------------------------------------------------- safe unpickling


def _marker_payload(marker: Path) -> object:
    class WritesMarker:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    # The payload first: the positive control's plain unpickler reaches it before the (stubbed) tensor storages.
    return {"payload": WritesMarker(), "state_dict": {"w": torch.ones(2)}}


def _raw_torch_zip(pkl: bytes) -> bytes:
    """A torch-zip archive around raw pickle bytes (what an attacker can hand-craft)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_a_pickle_that_runs_code_stays_inert(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(_marker_payload(marker), path)

    obj = read_torch_pickle(path.read_bytes(), source=str(path))
    assert not marker.exists()
    torch.testing.assert_close(obj["state_dict"]["w"], torch.ones(2))  # the data is still read
    rec = obj["payload"]
    assert isinstance(rec, PickledObject) and rec.class_path in ("posix.system", "nt.system", "os.system")
    assert rec.args == (f"touch {marker}",)
    # Every entry point refuses it, naming the file, and runs nothing.
    with pytest.raises(UltralyticsCheckpointError, match="evil.pt"):
        read_ultralytics_checkpoint(str(path))
    with pytest.raises(UltralyticsCheckpointError, match="evil.pt"):
        build_detector("yolo", weights=str(path))
    assert not marker.exists()

    # Positive control: ordinary unpickling of the archive's pickle (what an unsafe loader does) runs the payload.
    # Plain pickle in a child process, storages stubbed: the project never calls torch.load without weights_only.
    code = (
        "import pickle, zipfile\n"
        f"z = zipfile.ZipFile({str(path)!r})\n"
        "name = next(n for n in z.namelist() if n.endswith('data.pkl'))\n"
        "u = pickle.Unpickler(__import__('io').BytesIO(z.read(name)))\n"
        "u.persistent_load = lambda pid: None\n"
        "try:\n    u.load()\nexcept Exception:\n    pass\n"  # tensors fail on the stubs, after the payload
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert marker.exists(), "the payload did not run under plain pickle: this test would prove nothing"


def test_hand_made_pickles_calling_exec_and_getattr_stay_inert(tmp_path):
    marker = tmp_path / "pwned2"
    code = f"open({str(marker)!r}, 'w').close()"
    # builtins.exec(code)
    exec_pkl = b"\x80\x02cbuiltins\nexec\nq\x00X" + len(code).to_bytes(4, "little") + code.encode() + b"\x85R."
    # getattr(importlib.import_module('os'), 'system')('touch …'): calls a *result* of a call.
    cmd = f"touch {marker}".encode()
    chain_pkl = (
        b"\x80\x02cbuiltins\ngetattr\ncimportlib\nimport_module\nX\x02\x00\x00\x00os\x85R"
        b"X\x06\x00\x00\x00system\x86RX" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R."
    )
    for pkl in (exec_pkl, chain_pkl):
        res = _run(f"import pickle; pickle.loads({pkl!r})")  # positive control, in a child process
        assert res.returncode == 0 and marker.exists(), res.stderr
        marker.unlink()
        obj = read_torch_pickle(_raw_torch_zip(pkl), source="hand-made.pt")
        assert isinstance(obj, PickledObject) and not marker.exists()
    assert obj.class_path == "<call>" and obj.args[0].class_path == "builtins.getattr"
    paths = {r.class_path for r in iter_pickled_objects(obj)}
    assert {"builtins.getattr", "importlib.import_module"} <= paths


def test_whitelisted_objects_cannot_be_mutated_and_bad_files_are_named(tmp_path):
    # OrderedDict() then BUILD {'x': 1}: object-state on a real object is refused (never a foreign __setstate__).
    build_pkl = b"\x80\x02ccollections\nOrderedDict\n)R}X\x01\x00\x00\x00xK\x01sb."
    with pytest.raises(UnsafeCheckpointError, match=r"bad\.pt: BUILD .* refused"):
        read_torch_pickle(_raw_torch_zip(build_pkl), source="bad.pt")
    with pytest.raises(UnsafeCheckpointError, match="junk.pt: not a torch zip"):
        read_torch_pickle(b"not a zip", source="junk.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(_raw_torch_zip(b"\x80\x02}q\x00(X\x01\x00\x00\x00a"))
    with pytest.raises(UltralyticsCheckpointError, match="truncated.pt: malformed torch pickle"):
        read_ultralytics_checkpoint(str(truncated))
    with pytest.raises(UltralyticsCheckpointError, match="not found"):
        read_ultralytics_checkpoint(str(tmp_path / "missing.pt"))


# ------------------------------------------------------------------------------------------------ strict load


def test_every_state_dict_key_is_consumed(checkpoint):
    net = YoloNet(checkpoint.arch(), bn_eps=checkpoint.bn_eps)
    assert set(net.state_dict()) == set(checkpoint.state_dict)  # no missing, no unexpected
    assert len(checkpoint.state_dict) == 541
    load_state_dict_strict(net, checkpoint.state_dict, checkpoint.source)
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert checkpoint.state_dict["model.23.dfl.conv.weight"].flatten().tolist() == list(range(16))


def test_a_checkpoint_with_a_mangled_key_fails_naming_it(weights_path, tmp_path):
    # Rename the Pose head's keypoint branch 'cv4' → 'cv9' inside the pickle (same length, so the file stays valid).
    src = zipfile.ZipFile(weights_path)
    mangled = tmp_path / "mangled.pt"
    with zipfile.ZipFile(mangled, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                needle = b"X\x03\x00\x00\x00cv4"
                assert data.count(needle) == 1
                data = data.replace(needle, b"X\x03\x00\x00\x00cv9")
            dst.writestr(info, data)
    expected = r"mangled\.pt(.|\n)*unexpected keys(.|\n)*model\.23\.cv9\.0\.0\.conv\.weight"
    with pytest.raises(CheckpointError, match=expected):
        build_detector("yolo", weights=str(mangled))


def test_built_in_yaml_is_the_checkpoints(checkpoint):
    own, theirs = yolo11n_pose_yaml(), checkpoint.yaml
    for key in ("backbone", "head", "kpt_shape", "scale"):
        assert json.dumps(own[key]) == json.dumps(theirs[key]).replace('"None"', "null"), key
    assert own["scales"] == theirs["scales"]
    assert parse_yolo_yaml(own) == checkpoint.arch()


def test_unknown_modules_and_bad_layer_lists_fail_naming_them():
    y = yolo11n_pose_yaml()
    y["backbone"][2] = [-1, 2, "C2fAttn", [256, 128, 4]]
    with pytest.raises(UltralyticsCheckpointError, match=r"layer 2 \(C2fAttn\).*not implemented.*C3k2"):
        parse_yolo_yaml(y)
    y = yolo11n_pose_yaml()
    y["head"][1] = [[-1, 40], 1, "Concat", [1]]
    with pytest.raises(UltralyticsCheckpointError, match=r"layer 12 \(Concat\): input \(-1, 40\) does not exist"):
        parse_yolo_yaml(y)
    with pytest.raises(UltralyticsCheckpointError, match="activation"):
        parse_yolo_yaml({**yolo11n_pose_yaml(), "activation": "nn.ReLU()"})


def test_scales_and_yolov8_layouts_resolve_like_ultralytics():
    # YOLO11m: width 1.0, max 512 channels, C3k2 forced to C3k inner blocks; depth 0.5 halves repeats 2 → 1.
    arch = parse_yolo_yaml(yolo11n_pose_yaml(), scale="m")
    assert arch.layers[2].args == (128, 256, 1, True, 0.25) and arch.layers[8].args[:2] == (512, 512)
    # A YOLOv8-style layer list (C2f, SPPF, Detect) builds the legacy head and runs.
    v8 = {
        "nc": 80,
        "scales": {"n": [0.33, 0.25, 1024]},
        "backbone": [
            [-1, 1, "Conv", [64, 3, 2]],
            [-1, 1, "Conv", [128, 3, 2]],
            [-1, 3, "C2f", [128, True]],
            [-1, 1, "Conv", [256, 3, 2]],
            [-1, 1, "SPPF", [256, 5]],
        ],
        "head": [
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 2], 1, "Concat", [1]],
            [-1, 1, "C2f", [128]],
            [[-1, 4], 1, "Detect", ["nc"]],
        ],
    }
    v8["head"][1] = [[-1, 3], 1, "Concat", [1]]  # layer 5 (stride 4) with layer 3 (stride 8)
    with pytest.raises(UltralyticsCheckpointError, match=r"layer 6 \(Concat\): inputs of different strides"):
        parse_yolo_yaml(v8)
    v8["head"] = [[-1, 1, "C2f", [256]], [[2, 3, 5], 1, "Detect", ["nc"]]]
    arch = parse_yolo_yaml(v8)
    assert arch.legacy_head and arch.strides == (4, 8, 8) and arch.layers[2].args == (32, 32, 1, True)
    net = YoloNet(arch).eval()
    assert "model.6.cv3.0.0.conv.weight" in net.state_dict()  # legacy cv3: Conv, not (DWConv, Conv)
    out = net(torch.zeros(1, 3, 64, 64))
    assert out.boxes_xyxy.shape == (1, 16 * 16 + 8 * 8 * 2, 4) and out.keypoints is None


# -------------------------------------------------------------------------------------------- random weights


def test_random_weights_build_without_a_file_seeded_and_marked():
    a = build_detector("yolo", random_weights=True, input_size=128)
    b = build_detector("yolo", random_weights=True, input_size=128)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.random_weights and a.keypoint_set == "coco17"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8), rng.integers(0, 255, (120, 80, 3), dtype=np.uint8)]
    outs = a(frames)
    assert [o.weights_id for o in outs] == ["random", "random"]
    for o, f in zip(outs, frames):
        assert o.keypoints.shape == (len(o), 17, 2) and o.keypoint_scores.shape == (len(o), 17)
        assert (o.boxes_xyxy[:, [0, 2]] <= f.shape[1]).all() and (o.boxes_xyxy[:, [1, 3]] <= f.shape[0]).all()
    with pytest.raises(ValueError, match="multiple of 32"):
        build_detector("yolo", random_weights=True, input_size=100)
    with pytest.raises(ValueError, match="does not use darknet_cfg"):
        build_detector("yolo", random_weights=True, darknet_cfg="x.cfg")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_inference(dtype, checkpoint):
    net = YoloNet(checkpoint.arch(), bn_eps=checkpoint.bn_eps)
    load_state_dict_strict(net, checkpoint.state_dict)
    net.eval()
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = net(x)
        half = net.to(getattr(torch, dtype))(x)
    assert half.boxes_xyxy.dtype == half.keypoints.dtype == torch.float32  # decoding stays float32
    assert next(net.parameters()).dtype == getattr(torch, dtype)
    # Close to float32 where it matters: scores of the confident anchors, and their boxes.
    top = ref.scores[0, :, 0].argsort(descending=True)[:20]
    tol = 0.05 if dtype == "bfloat16" else 0.01
    assert (half.scores[0, top] - ref.scores[0, top]).abs().max() < tol
    assert (half.boxes_xyxy[0, top] - ref.boxes_xyxy[0, top]).abs().max() < (8.0 if dtype == "bfloat16" else 2.0)


# ----------------------------------------------------------------------------------- letterbox, NMS, alignment


@pytest.mark.parametrize("wh", [(640, 480), (500, 333), (960, 540), (333, 500), (1, 700), (64, 64)])
def test_letterbox_geometry_and_its_inverse(wh):
    geo = letterbox_geometry(wh, 640)
    assert geo.input_wh == (640, 640)
    frame = np.full((wh[1], wh[0], 3), 7, np.uint8)
    canvas = letterbox(frame, geo)
    assert canvas.shape == (640, 640, 3)
    x0, y0, (nw, nh) = geo.left, geo.top, geo.new_wh
    assert (canvas[y0 : y0 + nh, x0 : x0 + nw] == 7).all() and (canvas == 114).sum() == 3 * (640 * 640 - nw * nh)
    content = torch.tensor([[x0, y0, x0 + nw, y0 + nh]], dtype=torch.float32)
    torch.testing.assert_close(boxes_to_frame(content, geo), torch.tensor([[0.0, 0.0, *map(float, wh)]]))
    kp = keypoints_to_frame(torch.tensor([[[x0 - 50.0, y0 + nh / 2], [x0 + nw / 2, 10_000.0]]]), geo)
    torch.testing.assert_close(kp, torch.tensor([[[0.0, wh[1] / 2], [wh[0] / 2, float(wh[1])]]]), atol=1e-3, rtol=0)
    # Ultralytics' numbers for a 500×333 COCO image: r = 1.28, 640×426 content, 107 px bars above and below.
    if wh == (500, 333):
        assert (geo.new_wh, geo.left, geo.top) == ((640, 426), 0, 107)


def test_non_max_suppression_follows_ultralytics():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 9, 9.0]])
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.0], [0.1, 0.95], [0.25, 0.0], [0.3, 0.31]])
    idx, score, label = non_max_suppression(boxes, scores, conf=0.25, iou=0.7)
    # anchor 3 is not > 0.25; anchor 1 overlaps anchor 0 (IoU 0.68 < 0.7) and stays; anchor 4's best class is 1,
    # which anchor 2 (class 1) suppresses; anchor 2 does not suppress anchor 0 (another class).
    assert idx.tolist() == [2, 0, 1] and label.tolist() == [1, 0, 0]
    torch.testing.assert_close(score, torch.tensor([0.95, 0.9, 0.8]))
    idx, _, _ = non_max_suppression(boxes, scores, conf=0.25, iou=0.7, classes=[0], max_det=1)
    assert idx.tolist() == [0]
    idx, score, label = non_max_suppression(boxes, scores, conf=0.99)
    assert idx.shape == score.shape == label.shape == (0,) and idx.dtype == torch.int64


class _FakeKeypointDetector(PersonDetector):
    keypoint_set = "coco17"

    def _detect(self, frames, keys):
        boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 20, 20], [0, 0, 30, 30]], np.float32)
        scores = np.array([0.5, 0.9, 0.2, 0.7], np.float32)
        kps = np.arange(4 * 17 * 2, dtype=np.float32).reshape(4, 17, 2)
        return [(boxes, scores, kps, kps[..., 0] / 1000)]


def test_keypoints_stay_aligned_with_boxes_through_the_filters():
    det = _FakeKeypointDetector(
        arch="fake", weights_id="x", device="cpu", score_threshold=0.3, min_box_area=150.0, max_persons=2
    )
    out = det([np.zeros((40, 40, 3), np.uint8)])[0]
    # kept: score > 0.3 and area ≥ 150 → rows 1 (0.9, clamped to 40×40) and 3 (0.7); row 0 (area 100) dropped.
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])
    assert out.keypoints[0, 0].tolist() == [34.0, 35.0] and out.keypoints[1, 0].tolist() == [102.0, 103.0]
    np.testing.assert_allclose(out.keypoint_scores, out.keypoints[..., 0] / 1000)
    assert out.keypoints.flags.c_contiguous and out.keypoints.dtype == np.float32


def test_docstring_examples_run():
    assert doctest.testmod(models.ultralytics, raise_on_error=True).attempted >= 3
    assert doctest.testmod(models.safe_unpickle, raise_on_error=True).attempted >= 2
