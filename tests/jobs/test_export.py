"""``jobs.export`` round trips: every format, read back, equals the Parquet keypoint table (float32 exact),
including frames without persons and untracked rows; plus the table reader ``store.tables``. Pure, no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs.export import OPENPOSE_18_ORDER, OPENPOSE_BODY25_NAMES, openpose_body, to_posetrack18
from jobs.export import main as export_main
from models.keypoints import COCO_17, HALPE_26, POSETRACK_18, get_keypoint_set
from store.manifest import Manifest, write_manifest
from store.schema import frames_table, keypoint_table, table_metadata
from store.sources import list_inputs
from store.tables import (
    OutputNotFoundError,
    list_video_ids,
    load_output,
    pose_arrays,
    read_frames,
    read_poses,
    video_frames,
)
from store.writers import write_table_atomic

# frame → track ids of its persons (0 = untracked); frames missing here have nobody.
VIDEO_PERSONS = {0: [1, 2], 1: [1, 2], 3: [2, 0], 4: [1]}  # 5 frames, frame 2 empty
IMAGE_PERSONS = {0: [0], 2: [0, 0]}  # 3 images, image 1 empty, nothing tracked


def _publish(
    out: Path | str,
    video_id: str,
    unit_uri: str,
    n_frames: int,
    persons: dict,
    *,
    video: bool,
    frame_uris=None,
    keypoint_set: str = "coco17",
    seed: int = 0,
) -> None:
    rng = np.random.default_rng(seed)
    k = get_keypoint_set(keypoint_set).num_keypoints
    frame_index = np.asarray([f for f in sorted(persons) for _ in persons[f]], np.int64)
    track = np.asarray([t for f in sorted(persons) for t in persons[f]], np.int64)
    person = np.asarray([i for f in sorted(persons) for i in range(len(persons[f]))])
    p = len(frame_index)
    kps = (rng.random((p, k, 2)) * [640, 480]).astype(np.float32)  # values with float32 rounding in them
    xy0 = kps.min(1) - rng.random((p, 2)).astype(np.float32) * 7
    boxes = np.concatenate([xy0, kps.max(1) + 3.3], axis=1)
    source = unit_uri if video else np.asarray([frame_uris[f] for f in frame_index], dtype=object)
    md = table_metadata(random_weights=False)
    table = keypoint_table(
        source_uri=source,
        frame_index=frame_index,
        timestamp_s=frame_index / 30.0 if video else np.full(p, np.nan),
        image_width=np.full(p, 640),
        image_height=np.full(p, 480),
        person_index=person,
        track_id=track if (track > 0).any() else None,
        box_xyxy=boxes,
        box_score=rng.random(p),
        keypoints=kps,
        keypoint_scores=rng.random((p, k)),
        pose_score=rng.random(p) * 3,
        keypoint_set=keypoint_set,
        detector="d",
        detector_sha256="x",
        sppe="s",
        sppe_sha256="y",
        metadata=md,
    )
    counts = np.asarray([len(persons.get(f, [])) for f in range(n_frames)])
    frames = frames_table(
        np.arange(n_frames),
        np.arange(n_frames) / 30.0 if video else np.full(n_frames, np.nan),
        counts,
        ["ok"] * n_frames,
        metadata=md,
    )
    write_table_atomic(table, f"{out}/poses/video_id={video_id}/part-0.parquet")
    write_table_atomic(frames, f"{out}/frames/video_id={video_id}/part-0.parquet")
    write_manifest(
        str(out),
        Manifest(
            video_id=video_id,
            source_uri=unit_uri,
            fingerprint="f",
            config_hash="c",
            run_id="r",
            num_frames=n_frames,
            num_persons=p,
            num_errors=0,
            files=(),
            random_weights=False,
        ),
    )


@pytest.fixture()
def run(tmp_path):
    """An output folder with a tracked video (frame 2 empty, one untracked row) and an untracked image folder
    (image 1 empty: named only by listing the folder again)."""
    imgs = tmp_path / "media" / "imgs"
    imgs.mkdir(parents=True)
    for i in (10, 11, 12):
        (imgs / f"img_{i:06d}.jpg").write_bytes(b"x")
    unit = list_inputs([str(imgs)])[0]
    out = tmp_path / "out"
    _publish(out, "clip-0000aaaa", str(tmp_path / "media" / "clip.mp4"), 5, VIDEO_PERSONS, video=True)
    _publish(out, unit.video_id, unit.source_uri, 3, IMAGE_PERSONS, video=False, frame_uris=unit.frames, seed=1)
    return {"out": out, "video": "clip-0000aaaa", "images": unit.video_id, "unit": unit, "tmp": tmp_path}


def _rows(run, vid):
    return pose_arrays(read_poses(str(run["out"]), vid))


def _export(run, fmt, dest, *extra) -> int:
    return export_main(["--output", str(run["out"]), "--format", fmt, "--dest", str(dest), *extra])


# ---- the reader ------------------------------------------------------------------------------------------------


def test_tables_reader(run):
    out = str(run["out"])
    assert list_video_ids(out) == sorted([run["video"], run["images"]])
    poses = read_poses(out)
    assert poses.num_rows == 10 and poses.schema.field("video_id").type == "string"
    assert read_poses(out, run["video"]).column("video_id").to_pylist() == [run["video"]] * 7
    assert read_frames(out, run["images"]).column("n_persons").to_pylist() == [1, 0, 2]
    arr = _rows(run, run["video"])
    assert arr.keypoints.shape == (7, 17, 2) and arr.track_id.tolist() == [1, 2, 1, 2, 2, 0, 1]
    assert arr.tracked.tolist() == [True] * 5 + [False, True]
    tables = load_output(out, run["images"])
    assert tables.video_ids == (run["images"],) and not tables.random_weights
    vf = video_frames(out, run["images"])
    assert vf.kind == "images" and vf.name == "imgs" and vf.frame_uris == dict(enumerate(run["unit"].frames))
    vv = video_frames(out, run["video"])
    assert vv.kind == "video" and vv.name == "clip" and vv.frame_indices.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="not found"):
        read_poses(out, "nope")
    with pytest.raises(OutputNotFoundError):
        read_poses(str(run["tmp"] / "missing"))


# ---- AlphaPose and COCO -------------------------------------------------------------------------------------------


def _check_records(records, arr, names, *, alphapose: bool):
    assert len(records) == len(arr)
    for r, rec in enumerate(records):
        assert rec["image_id"] == names[int(arr.frame_index[r])] and rec["category_id"] == 1
        kp = np.asarray(rec["keypoints"]).reshape(-1, 3)
        assert np.array_equal(kp[:, :2].astype(np.float32), arr.keypoints[r])
        assert np.array_equal(kp[:, 2].astype(np.float32), arr.keypoint_scores[r])
        assert np.float32(rec["score"]) == arr.pose_score[r]
        if alphapose:
            x, y, w, h = rec["box"]
            assert np.array_equal(np.asarray([x, y, x + w, y + h], np.float32), arr.box_xyxy[r])
            assert type(rec["idx"]) is int and rec["idx"] == int(arr.track_id[r])  # 0 = untracked
        else:
            assert set(rec) == {"image_id", "category_id", "keypoints", "score"}


def test_alphapose_round_trip(run):
    dest = run["tmp"] / "alphapose-results.json"
    assert _export(run, "alphapose", dest) == 0
    records = json.loads(dest.read_text())
    video, images = _rows(run, run["video"]), _rows(run, run["images"])
    first = {run["video"]: 0, run["images"]: len(video)}  # one list: videos in id order, frames in order
    for vid, arr, names in (
        (run["video"], video, {f: f"{f}.jpg" for f in range(5)}),
        (run["images"], images, {i: f"img_{10 + i:06d}.jpg" for i in range(3)}),
    ):
        _check_records(records[first[vid] : first[vid] + len(arr)], arr, names, alphapose=True)
    assert "2.jpg" not in {r["image_id"] for r in records}  # a frame without persons has no record
    assert "img_000011.jpg" not in {r["image_id"] for r in records}
    assert [r["idx"] for r in records[first[run["video"]] :][:7]] == [1, 2, 1, 2, 2, 0, 1]


def test_alphapose_name_collisions_and_per_video(run):
    _publish(run["out"], "other-0000bbbb", str(run["tmp"] / "media" / "other.mp4"), 2, {0: [3]}, video=True)
    assert _export(run, "alphapose", run["tmp"] / "one.json") == 2  # both videos have a "0.jpg"
    assert _export(run, "alphapose", run["tmp"] / "one.json", "--video-id", "other-0000bbbb") == 0
    assert [r["image_id"] for r in json.loads((run["tmp"] / "one.json").read_text())] == ["0.jpg"]
    dest = run["tmp"] / "per"
    assert _export(run, "alphapose", dest, "--per-video") == 0
    for vid in (run["video"], run["images"], "other-0000bbbb"):
        arr = _rows(run, vid)
        assert len(json.loads((dest / vid / "alphapose-results.json").read_text())) == len(arr)


def test_coco_round_trip(run):
    dest = run["tmp"] / "results.json"
    assert _export(run, "coco", dest, "--video-id", run["images"]) == 0
    _check_records(
        json.loads(dest.read_text()),
        _rows(run, run["images"]),
        {i: f"img_{10 + i:06d}.jpg" for i in range(3)},
        alphapose=False,
    )


def test_coco_with_gt_ids_loads_in_pycocotools(tmp_path, shared_data):
    from pycocotools.coco import COCO

    gt_path = shared_data / "coco" / "test_coco.json"
    unit = list_inputs([str(shared_data / "coco")])[0]
    out = tmp_path / "out"
    _publish(out, unit.video_id, unit.source_uri, 4, {0: [0], 2: [0, 0], 3: [0]}, video=False, frame_uris=unit.frames)
    dest = tmp_path / "res.json"
    assert export_main(["--output", str(out), "--format", "coco", "--dest", str(dest), "--gt", str(gt_path)]) == 0
    records = json.loads(dest.read_text())
    ids = {f: int(u.rsplit("/", 1)[-1].split(".")[0]) for f, u in enumerate(unit.frames)}
    _check_records(records, pose_arrays(read_poses(str(out))), ids, alphapose=False)
    gt = COCO(str(gt_path))
    assert len(gt.loadRes(str(dest)).getAnnIds()) == 4


# ---- PoseTrack -----------------------------------------------------------------------------------------------------


def test_posetrack_round_trip(run):
    dest = run["tmp"] / "posetrack"
    assert _export(run, "posetrack", dest) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["clip.json", "imgs.json"]  # named like the sequences
    shared = [j for j, n in enumerate(POSETRACK_18.names) if n in COCO_17.names]
    src = [COCO_17.index(POSETRACK_18.names[j]) for j in shared]
    missing = [POSETRACK_18.index("head_bottom"), POSETRACK_18.index("head_top")]
    for vid, name, n_frames, file_names in (
        (run["video"], "clip", 5, [f"clip/{f:06d}.jpg" for f in range(5)]),
        (run["images"], "imgs", 3, [f"imgs/img_{10 + i:06d}.jpg" for i in range(3)]),
    ):
        doc = json.loads((dest / f"{name}.json").read_text())
        assert doc["categories"][0]["keypoints"] == list(POSETRACK_18.names)
        assert [im["file_name"] for im in doc["images"]] == file_names  # empty frames included
        assert all(im["nframes"] == n_frames and im["vid_id"] == name for im in doc["images"])
        frame_of = {im["id"]: im["frame_index"] for im in doc["images"]}
        arr = _rows(run, vid)
        assert len(doc["annotations"]) == len(arr)
        for r, ann in enumerate(doc["annotations"]):
            assert frame_of[ann["image_id"]] == arr.frame_index[r]
            kp = np.asarray(ann["keypoints"]).reshape(17, 3)
            sc = np.asarray(ann["scores"])
            assert np.array_equal(kp[shared, :2].astype(np.float32), arr.keypoints[r, src])
            assert np.array_equal(sc[shared].astype(np.float32), arr.keypoint_scores[r, src])
            assert (kp[shared, 2] == 1).all() and (kp[missing] == 0).all() and (sc[missing] == 0).all()
            assert ann["track_id"] == (int(arr.track_id[r]) if arr.track_id[r] > 0 else -1)
            x, y, w, h = ann["bbox"]
            assert np.array_equal(np.asarray([x, y, x + w, y + h], np.float32), arr.box_xyxy[r])
            assert np.float32(ann["score"]) == arr.pose_score[r]


def test_posetrack_joint_mapping_from_halpe():
    kps = np.arange(26 * 2, dtype=np.float32).reshape(1, 26, 2)
    out, sc, have = to_posetrack18(kps, np.ones((1, 26)), "halpe26")
    assert have.all()  # Halpe has every PoseTrack joint: head_top ← head, head_bottom ← neck
    assert np.array_equal(out[0, POSETRACK_18.index("head_top")], kps[0, HALPE_26.index("head")])
    assert np.array_equal(out[0, POSETRACK_18.index("head_bottom")], kps[0, HALPE_26.index("neck")])
    assert np.array_equal(out[0, POSETRACK_18.index("left_ear")], kps[0, HALPE_26.index("left_ear")])


# ---- OpenPose ------------------------------------------------------------------------------------------------------


def test_openpose_round_trip(run):
    dest = run["tmp"] / "openpose"
    assert _export(run, "openpose", dest) == 0
    names = sorted(p.name for p in dest.iterdir())
    assert len(names) == 8  # one file per frame, persons or not
    for vid, n_frames in ((run["video"], 5), (run["images"], 3)):
        arr = _rows(run, vid)
        r = 0
        for f in range(n_frames):
            doc = json.loads((dest / f"{vid}_{f:012d}_keypoints.json").read_text())
            assert doc["version"] == 1.3
            assert len(doc["people"]) == int((arr.frame_index == f).sum())
            for person in doc["people"]:
                j = np.asarray(person["pose_keypoints_2d"]).reshape(18, 3)
                inv = [OPENPOSE_18_ORDER.index(k) for k in range(17)]
                assert np.array_equal(j[inv, :2].astype(np.float32), arr.keypoints[r])
                assert np.array_equal(j[inv, 2].astype(np.float32), arr.keypoint_scores[r])
                xyc = np.concatenate([arr.keypoints[r], arr.keypoint_scores[r][:, None]], 1).astype(np.float64)
                np.testing.assert_allclose(j[1], (xyc[5] + xyc[6]) / 2, rtol=0, atol=1e-12)  # neck
                assert person["person_id"] == [int(arr.track_id[r]) if arr.track_id[r] > 0 else -1]
                assert person["face_keypoints_2d"] == [] and person["hand_left_keypoints_2d"] == []
                r += 1
        assert r == len(arr)


def test_openpose_bodies(tmp_path):
    kps = np.arange(26 * 2, dtype=np.float32).reshape(1, 26, 2)
    b25 = openpose_body(kps, np.ones((1, 26)), "halpe26", 25)
    assert b25.shape == (1, 25, 3)
    for j, name in enumerate(OPENPOSE_BODY25_NAMES):
        assert np.array_equal(b25[0, j, :2], kps[0, HALPE_26.index(name)])
    assert openpose_body(kps, np.ones((1, 26)), "halpe26", 18).shape == (1, 18, 3)
    out = tmp_path / "out"
    _publish(out, "cp-0000cccc", str(tmp_path / "cp.mp4"), 1, {0: [1]}, video=True, keypoint_set="crowdpose14")
    assert export_main(["--output", str(out), "--format", "openpose", "--dest", str(tmp_path / "op")]) == 2
    out2 = tmp_path / "out2"
    _publish(out2, "h-0000dddd", str(tmp_path / "h.mp4"), 1, {0: [1]}, video=True, keypoint_set="halpe26")
    assert export_main(["--output", str(out2), "--format", "openpose", "--dest", str(tmp_path / "op2")]) == 0
    doc = json.loads((tmp_path / "op2" / "h-0000dddd_000000000000_keypoints.json").read_text())
    assert len(doc["people"][0]["pose_keypoints_2d"]) == 25 * 3  # BODY_25 by default for Halpe-26


@pytest.mark.parametrize(
    "keypoint_set, face_at, left_at, right_at", [("halpe136", 26, 94, 115), ("coco_wholebody133", 23, 91, 112)]
)
def test_openpose_whole_body_fills_face_and_hands(tmp_path, keypoint_set, face_at, left_at, right_at):
    """Beyond AlphaPose (its --format open leaves them empty): whole-body sets fill OpenPose's face (68 points + two
    pupils written as zeros) and hands (21 points each), and the AlphaPose JSON export carries all K points."""
    out = tmp_path / "out"
    _publish(out, "w-0000eeee", str(tmp_path / "w.mp4"), 1, {0: [1]}, video=True, keypoint_set=keypoint_set)
    assert export_main(["--output", str(out), "--format", "openpose", "--dest", str(tmp_path / "op")]) == 0
    person = json.loads((tmp_path / "op" / "w-0000eeee_000000000000_keypoints.json").read_text())["people"][0]
    arr = pose_arrays(read_poses(str(out)))
    xyc = np.concatenate([arr.keypoints[0], arr.keypoint_scores[0][:, None]], axis=1).astype(np.float64)
    face = np.asarray(person["face_keypoints_2d"]).reshape(70, 3)
    np.testing.assert_array_equal(face[:68], xyc[face_at : face_at + 68])
    assert not face[68:].any()
    np.testing.assert_array_equal(
        np.asarray(person["hand_left_keypoints_2d"]).reshape(21, 3), xyc[left_at : left_at + 21]
    )
    np.testing.assert_array_equal(
        np.asarray(person["hand_right_keypoints_2d"]).reshape(21, 3), xyc[right_at : right_at + 21]
    )
    body = 25 if keypoint_set == "halpe136" else 18
    assert len(person["pose_keypoints_2d"]) == body * 3
    assert export_main(["--output", str(out), "--format", "alphapose", "--dest", str(tmp_path / "ap.json")]) == 0
    (record,) = json.loads((tmp_path / "ap.json").read_text())
    assert len(record["keypoints"]) == 3 * arr.keypoints.shape[1]


# ---- bad inputs ----------------------------------------------------------------------------------------------------


def test_export_exit_codes(run, capsys):
    assert _export({**run, "out": run["tmp"] / "nothing"}, "coco", run["tmp"] / "x.json") == 2
    assert "not a raypose output folder" in capsys.readouterr().err
    assert _export(run, "coco", run["tmp"] / "x.json", "--video-id", "nope") == 2
    assert _export(run, "posetrack", run["tmp"] / "pt", "--gt", "gt.json") == 2
    with pytest.raises(SystemExit) as e:
        _export(run, "yaml", run["tmp"] / "x")
    assert e.value.code == 2


# ---- object storage ------------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_output_folder(s3_server, tmp_path, shared_data):
    """Read, evaluate and export an output folder on an S3 API; the evaluation JSON lands next to the run."""
    import s3fs

    from jobs.evaluate import main as evaluate_main

    fs = s3fs.S3FileSystem()
    fs.mkdir("labels")
    unit = list_inputs([str(shared_data / "coco")])[0]
    out = "s3://labels/run1"
    _publish(out, unit.video_id, unit.source_uri, 4, {0: [0], 1: [0], 3: [0, 0]}, video=False, frame_uris=unit.frames)
    assert list_video_ids(out) == [unit.video_id] and read_poses(out).num_rows == 4
    assert video_frames(out, unit.video_id).frame_uris == dict(enumerate(unit.frames))
    gt = str(shared_data / "coco" / "test_coco.json")
    assert evaluate_main(["--output", out, "--gt", gt]) == 0
    res = json.loads(fs.cat("labels/run1/eval/coco.json"))
    assert res["images"]["evaluated"] == 4 and res["predictions"] == 4
    dest = tmp_path / "ap.json"
    assert export_main(["--output", out, "--format", "alphapose", "--dest", str(dest)]) == 0
    assert len(json.loads(dest.read_text())) == 4
