"""``jobs.evaluate`` on real ground truth (COCO, CrowdPose, Bonn PoseTrack) with predictions made from that ground
truth: perfect predictions give exactly 1.0, damaged ones the expected loss. Pure: output folders are written
with the schema helpers, no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs.evaluate import main as evaluate_main
from store.manifest import Manifest, write_manifest
from store.schema import frames_table, keypoint_table, table_metadata
from store.sources import list_inputs
from store.writers import write_table_atomic


def publish(
    out: Path,
    video_id: str,
    *,
    unit_uri: str,
    n_frames: int,
    frame_index,
    source_uri,
    keypoints,
    keypoint_scores,
    pose_score,
    box_xyxy=None,
    track_id=None,
    video=False,
    keypoint_set="coco17",
    random_weights=False,
    manifest=True,
) -> None:
    """Write one video's tables (and commit marker) as jobs.label publishes them."""
    frame_index = np.asarray(frame_index, np.int64)
    p = len(frame_index)
    kps = np.asarray(keypoints, np.float32).reshape(p, -1, 2)
    if box_xyxy is None:
        box_xyxy = np.concatenate([kps.min(1), kps.max(1)], axis=1) if p else np.zeros((0, 4))
    ts = frame_index / 25.0 if video else np.full(p, np.nan)
    person = np.zeros(p, np.int64)
    for i in range(1, p):
        person[i] = person[i - 1] + 1 if frame_index[i] == frame_index[i - 1] else 0
    md = table_metadata(random_weights=random_weights)
    table = keypoint_table(
        source_uri=np.asarray(source_uri, dtype=object) if not isinstance(source_uri, str) else source_uri,
        frame_index=frame_index,
        timestamp_s=ts,
        image_width=np.full(p, 640),
        image_height=np.full(p, 480),
        person_index=person,
        track_id=track_id,
        box_xyxy=box_xyxy,
        box_score=np.ones(p),
        keypoints=kps,
        keypoint_scores=keypoint_scores,
        pose_score=pose_score,
        keypoint_set=keypoint_set,
        detector="gt",
        detector_sha256="x",
        sppe="oracle",
        sppe_sha256="random" if random_weights else "y",
        metadata=md,
    )
    counts = np.bincount(frame_index, minlength=n_frames) if p else np.zeros(n_frames, np.int64)
    frames = frames_table(
        np.arange(n_frames),
        np.arange(n_frames) / 25.0 if video else np.full(n_frames, np.nan),
        counts,
        ["ok"] * n_frames,
        metadata=md,
    )
    write_table_atomic(table, str(out / "poses" / f"video_id={video_id}" / "part-0.parquet"))
    write_table_atomic(frames, str(out / "frames" / f"video_id={video_id}" / "part-0.parquet"))
    if manifest:
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
                random_weights=random_weights,
            ),
        )


def gt_rows(gt: dict, unit, *, name_of=None, jitter=0.0, seed=0, skip_images=()):
    """Rows predicted from the GT itself: one per annotation with labelled keypoints, in the unit's frame order."""
    rng = np.random.default_rng(seed)
    by_name = {im["file_name"].rsplit("/", 1)[-1]: im["id"] for im in gt["images"]}
    rows = {"frame_index": [], "source_uri": [], "keypoints": [], "keypoint_scores": [], "pose_score": []}
    for f, uri in enumerate(unit.frames):
        iid = by_name[uri.rsplit("/", 1)[-1]]
        if iid in skip_images:
            continue
        for a in gt["annotations"]:
            if a["image_id"] != iid or a.get("num_keypoints", 0) == 0:
                continue
            kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
            xy = kp[:, :2] + jitter * np.sqrt(a["bbox"][2] * a["bbox"][3]) * rng.standard_normal((len(kp), 2))
            rows["frame_index"].append(f)
            rows["source_uri"].append(uri)
            rows["keypoints"].append(xy)
            rows["keypoint_scores"].append(np.where(kp[:, 2] > 0, 0.9, 0.1))
            rows["pose_score"].append(2.0 - 0.01 * len(rows["pose_score"]))
    return {k: np.asarray(v) for k, v in rows.items()}


def run_eval(out: Path, gt: Path | str, *extra: str) -> tuple[int, dict | None]:
    dest = out / "result.json"
    rc = evaluate_main(["--output", str(out), "--gt", str(gt), "--out", str(dest), *extra])
    return rc, (json.loads(dest.read_text()) if rc == 0 else None)


@pytest.fixture(scope="module")
def coco(shared_data):
    path = shared_data / "coco" / "test_coco.json"
    return path, json.loads(path.read_text()), list_inputs([str(shared_data / "coco")])[0]


@pytest.fixture(scope="module")
def crowd(shared_data):
    path = shared_data / "crowdpose" / "test_crowdpose.json"
    return path, json.loads(path.read_text()), list_inputs([str(shared_data / "crowdpose")])[0]


def _publish_unit(out, unit, rows, **kw):
    publish(out, unit.video_id, unit_uri=unit.source_uri, n_frames=len(unit.frames), **rows, **kw)


# ---- COCO ------------------------------------------------------------------------------------------------------


def test_coco_ground_truth_as_prediction_is_perfect(tmp_path, coco, capsys):
    path, gt, unit = coco
    _publish_unit(tmp_path, unit, gt_rows(gt, unit))
    rc = evaluate_main(["--output", str(tmp_path), "--gt", str(path)])
    assert rc == 0
    res = json.loads((tmp_path / "eval" / "coco.json").read_text())  # default: next to the run
    assert res["stats"] == {
        n: 1.0 for n in ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR", "AR50", "AR75", "AR_M", "AR_L")
    }
    assert res["predictions"] == 12 and res["images"]["evaluated"] == 4 and res["match"] == {unit.video_id: "file_name"}
    printed = capsys.readouterr().out
    assert "AP50" in printed and "RANDOM WEIGHTS" not in printed


def test_coco_jitter_lowers_ap_monotonically(tmp_path, coco):
    path, gt, unit = coco
    aps = []
    for i, jitter in enumerate((0.02, 0.08)):
        out = tmp_path / f"run{i}"
        _publish_unit(out, unit, gt_rows(gt, unit, jitter=jitter))
        rc, res = run_eval(out, path)
        assert rc == 0
        aps.append(res["stats"]["AP"])
        assert res["stats"]["AP50"] >= res["stats"]["AP"]
    assert 1.0 > aps[0] > aps[1] >= 0.0


def test_coco_frame_without_persons_still_counts(tmp_path, coco):
    """An image the run found nobody in is evaluated (its GT people are misses): the folder is listed again from
    the commit marker to name that frame. Without the marker it cannot be named and is left out."""
    path, gt, unit = coco
    rows = gt_rows(gt, unit, skip_images=(785,))  # 785 holds 1 of the 12 labelled people
    _publish_unit(tmp_path / "a", unit, rows)
    rc, res = run_eval(tmp_path / "a", path)
    assert rc == 0 and res["images"]["evaluated"] == 4 and res["images"]["unnamed_frames"] == 0
    assert res["stats"]["AR"] == pytest.approx(11 / 12) and res["stats"]["AP"] < 1.0

    _publish_unit(tmp_path / "b", unit, rows, manifest=False)
    rc, res = run_eval(tmp_path / "b", path)
    assert rc == 0 and res["images"]["evaluated"] == 3 and res["images"]["unnamed_frames"] == 1
    assert res["stats"]["AP"] == 1.0
    rc, res = run_eval(tmp_path / "b", path, "--all-gt-images")
    assert rc == 0 and res["images"]["evaluated"] == 4 and res["stats"]["AR"] == pytest.approx(11 / 12)


def test_coco_match_by_alphapose_eval_id(tmp_path, coco):
    path, gt, unit = coco
    _publish_unit(tmp_path, unit, gt_rows(gt, unit))
    rc, res = run_eval(tmp_path, path, "--match", "id")  # 000000000785.jpg → 785
    assert rc == 0 and res["stats"]["AP"] == 1.0 and res["match"] == {unit.video_id: "id"}


def test_random_weights_are_announced(tmp_path, coco, capsys):
    path, gt, unit = coco
    _publish_unit(tmp_path, unit, gt_rows(gt, unit), random_weights=True)
    rc, res = run_eval(tmp_path, path)
    assert rc == 0 and res["random_weights"] is True
    assert "RANDOM WEIGHTS" in capsys.readouterr().out


# ---- CrowdPose ---------------------------------------------------------------------------------------------------


def test_crowdpose_perfect_and_crowd_index_bands(tmp_path, crowd):
    path, gt, unit = crowd
    _publish_unit(tmp_path, unit, gt_rows(gt, unit), keypoint_set="crowdpose14")
    rc, res = run_eval(tmp_path, path, "--kind", "crowdpose")
    assert rc == 0
    # crowdIndex 0.39 and 0.33: both images are "medium"; empty bands are -1 as in crowdposetools
    assert res["crowd_index_bands"] == {"easy": 0, "medium": 2, "hard": 0}
    assert res["stats"] == {
        "AP": 1.0,
        "AP50": 1.0,
        "AP75": 1.0,
        "AR": 1.0,
        "AR50": 1.0,
        "AR75": 1.0,
        "AP_easy": -1.0,
        "AP_medium": 1.0,
        "AP_hard": -1.0,
    }

    # Move the images into the easy (< 0.2) and hard (≥ 0.8) bands and damage only the hard image's predictions.
    moved = json.loads(json.dumps(gt))
    ci = {103319: 0.19, 106848: 0.8}
    for im in moved["images"]:
        im["crowdIndex"] = ci[im["id"]]
    gt2 = tmp_path / "gt_bands.json"
    gt2.write_text(json.dumps(moved))
    clean = gt_rows(gt, unit)
    noisy = gt_rows(gt, unit, jitter=0.08)
    hard_frame = [f for f, u in enumerate(unit.frames) if u.endswith("106848.jpg")][0]
    rows = {
        k: np.where((clean["frame_index"] == hard_frame).reshape((-1,) + (1,) * (v.ndim - 1)), noisy[k], v)
        for k, v in clean.items()
    }
    out = tmp_path / "bands"
    _publish_unit(out, unit, rows, keypoint_set="crowdpose14")
    rc, res = run_eval(out, gt2, "--kind", "crowdpose")
    assert rc == 0 and res["crowd_index_bands"] == {"easy": 1, "medium": 0, "hard": 1}
    assert res["stats"]["AP_easy"] == 1.0 and res["stats"]["AP_medium"] == -1.0
    assert res["stats"]["AP_hard"] < 1.0 and res["stats"]["AP"] < 1.0


def test_crowdpose_numbers_match_xtcocotools(tmp_path, crowd):
    """Pinned numbers, cross-checked once against xtcocotools 1.14.3 ``COCOeval(..., 'keypoints_crowd', sigmas,
    use_area=False)`` (a packaged copy of crowdposetools' rules) on the same GT and results file: all nine stats
    agreed to the last digit. Scene: images moved to the easy and hard bands, keypoints jittered, plus two shifted
    duplicates as low-score false positives."""
    path, gt, unit = crowd
    moved = json.loads(json.dumps(gt))
    for im in moved["images"]:
        im["crowdIndex"] = {103319: 0.19, 106848: 0.8}[im["id"]]
    gt2 = tmp_path / "gt_bands.json"
    gt2.write_text(json.dumps(moved))
    rows = gt_rows(gt, unit, jitter=0.05, seed=3)
    dup = {k: v[:2].copy() for k, v in rows.items()}
    dup["keypoints"] = dup["keypoints"] + 15
    dup["pose_score"] = np.full(2, 0.5)
    rows = {k: np.concatenate([rows[k], dup[k]]) for k in rows}
    order = np.argsort(rows["frame_index"], kind="stable")
    _publish_unit(tmp_path, unit, {k: v[order] for k, v in rows.items()}, keypoint_set="crowdpose14")
    rc, res = run_eval(tmp_path, gt2, "--kind", "crowdpose")
    assert rc == 0
    expected = {
        "AP": 0.681930693069307,
        "AP50": 1.0,
        "AP75": 1.0,
        "AR": 0.7,
        "AR50": 1.0,
        "AR75": 1.0,
        "AP_easy": 0.7252,
        "AP_medium": -1.0,
        "AP_hard": 0.6252,
    }
    assert res["stats"] == pytest.approx(expected, abs=1e-9)


def test_crowdpose_uses_its_smaller_object_scale(tmp_path, crowd):
    """Same predictions, same sigmas: OKS with scale 0.53·w·h (crowdpose) is lower than with w·h (coco kind)."""
    path, gt, unit = crowd
    _publish_unit(tmp_path, unit, gt_rows(gt, unit, jitter=0.05), keypoint_set="crowdpose14")
    rc, cp = run_eval(tmp_path, path, "--kind", "crowdpose")
    rc2, cc = run_eval(tmp_path, path, "--kind", "coco")
    assert rc == rc2 == 0
    assert cp["stats"]["AP"] < cc["stats"]["AP"]


def test_crowdpose_converts_halpe_predictions_and_refuses_coco(tmp_path, crowd):
    from models.keypoints import CROWDPOSE_14, HALPE_26

    path, gt, unit = crowd
    rows = gt_rows(gt, unit)
    halpe = np.zeros((len(rows["keypoints"]), 26, 2))
    hs = np.zeros((len(rows["keypoints"]), 26))
    for j, name in enumerate(CROWDPOSE_14.names):  # Halpe's head and neck are CrowdPose's (models.keypoints)
        halpe[:, HALPE_26.index(name)] = rows["keypoints"][:, j]
        hs[:, HALPE_26.index(name)] = rows["keypoint_scores"][:, j]
    _publish_unit(tmp_path / "h", unit, {**rows, "keypoints": halpe, "keypoint_scores": hs}, keypoint_set="halpe26")
    rc, res = run_eval(tmp_path / "h", path, "--kind", "crowdpose")
    assert rc == 0 and res["stats"]["AP"] == 1.0 and res["prediction_keypoint_sets"] == ["halpe26"]

    coco_rows = {**rows, "keypoints": np.zeros((len(halpe), 17, 2)), "keypoint_scores": np.zeros((len(halpe), 17))}
    _publish_unit(tmp_path / "c", unit, coco_rows)
    rc, _ = run_eval(tmp_path / "c", path, "--kind", "crowdpose")
    assert rc == 2


# ---- tracking ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bonn(shared_data):
    path = shared_data / "bonn_posetrack" / "060470979.json"
    gt = json.loads(path.read_text())
    frame_of = {im["id"]: im["frame_id"] for im in gt["images"]}
    anns = sorted(gt["annotations"], key=lambda a: (frame_of[a["image_id"]], a["track_id"]))
    kp = np.asarray([a["keypoints"] for a in anns], np.float64).reshape(len(anns), 14, 3)
    return {
        "path": path,
        "gt": gt,
        "frame": np.asarray([frame_of[a["image_id"]] for a in anns]),
        "track": np.asarray([a["track_id"] for a in anns]),
        "xy": kp[..., :2],
        "folder": list_inputs([str(shared_data / "bonn_posetrack" / "060470979")])[0],
        "video": str(shared_data / "bonn_posetrack" / "060470979.mp4"),
    }


def _publish_bonn(out: Path, bonn, track_id, *, as_video=True):
    p = len(track_id)
    common = dict(
        frame_index=bonn["frame"],
        keypoints=bonn["xy"],
        keypoint_scores=np.ones((p, 14)),
        pose_score=np.ones(p),
        track_id=np.asarray(track_id),
        keypoint_set="crowdpose14",
        n_frames=41,
    )
    if as_video:
        publish(out, "060470979-v", unit_uri=bonn["video"], source_uri=bonn["video"], video=True, **common)
    else:
        unit = bonn["folder"]
        publish(
            out,
            unit.video_id,
            unit_uri=unit.source_uri,
            source_uri=np.asarray([unit.frames[f] for f in bonn["frame"]], object),
            **common,
        )


@pytest.mark.parametrize("as_video", [True, False], ids=["video-by-frame", "images-by-file-name"])
def test_tracking_perfect_ids(tmp_path, bonn, as_video):
    _publish_bonn(tmp_path, bonn, bonn["track"] + 1, as_video=as_video)
    rc, res = run_eval(tmp_path, bonn["path"], "--kind", "track")
    assert rc == 0
    o = res["tracking"]["overall"]
    assert (o["MOTA"], o["IDF1"], o["IDSW"], o["FP"], o["FN"]) == (1.0, 1.0, 0, 0, 0)
    assert o["MOTP"] == pytest.approx(1.0) and o["gt_objects"] == 164 and o["frames"] == 41
    assert res["tracking"]["joints"] == list(bonn["gt"]["categories"][0]["keypoints"][:12]) + ["head", "neck"]


def test_tracking_swapped_ids_mid_sequence(tmp_path, bonn):
    """From frame 20 on, tracks 0 and 1 swap predicted ids: 2 ID switches; IDF1 pairs each GT track with the id
    it carries for 21 of its 41 frames: IDTP = 41 + 41 + 21 + 21 = 124 of 164."""
    ids = bonn["track"] + 1
    late = bonn["frame"] >= 20
    swapped = ids.copy()
    swapped[late & (ids == 1)] = 2
    swapped[late & (ids == 2)] = 1
    _publish_bonn(tmp_path, bonn, swapped)
    rc, res = run_eval(tmp_path, bonn["path"], "--kind", "track")
    assert rc == 0
    o = res["tracking"]["overall"]
    assert o["IDSW"] == 2 and o["FP"] == 0 and o["FN"] == 0
    assert o["MOTA"] == pytest.approx(1 - 2 / 164)
    assert o["IDF1"] == pytest.approx(2 * 124 / (2 * 124 + 40 + 40))


def test_tracking_box_iou_and_pck_similarities(tmp_path, bonn):
    _publish_bonn(tmp_path, bonn, bonn["track"] + 1)
    rc, res = run_eval(tmp_path, bonn["path"], "--kind", "track", "--similarity", "pck")  # Bonn has head_rect
    assert rc == 0 and res["tracking"]["overall"]["MOTA"] == 1.0
    rc, res = run_eval(tmp_path, bonn["path"], "--kind", "track", "--similarity", "box_iou", "--threshold", "0.3")
    assert rc == 0 and res["tracking"]["overall"]["IDSW"] == 0


def test_pckh_perfect_shifted_and_missing(tmp_path, bonn):
    """PCKh on Bonn: the GT itself scores 1.0; every joint moved by 0.4 × its person's head size still counts, 0.6 ×
    does not (a handful of joints then land near a neighbour's: < 1 %); dropping one person's rows loses exactly its
    labelled joints."""
    _publish_bonn(tmp_path, bonn, bonn["track"] + 1)
    rc, res = run_eval(tmp_path, bonn["path"], "--kind", "pckh")
    assert rc == 0 and res["pckh"]["PCKh"] == 1.0 and res["pckh"]["paired"] == 164
    frame_of = {im["id"]: im["frame_id"] for im in bonn["gt"]["images"]}
    anns = sorted(bonn["gt"]["annotations"], key=lambda a: (frame_of[a["image_id"]], a["track_id"]))  # as bonn["xy"]
    assert len(anns) == len(bonn["xy"])
    head = np.asarray(
        [0.6 * np.hypot(a["head_rect"][2] - a["head_rect"][0], a["head_rect"][3] - a["head_rect"][1]) for a in anns]
    )
    for factor, (lo, hi) in ((0.4, (1.0, 1.0)), (0.6, (0.0, 0.01))):
        moved = dict(bonn, xy=bonn["xy"] + factor * head[:, None, None] * np.array([1.0, 0.0]))
        out = tmp_path / f"moved{factor}"
        _publish_bonn(out, moved, bonn["track"] + 1)
        rc, res = run_eval(out, bonn["path"], "--kind", "pckh")
        assert rc == 0 and lo <= res["pckh"]["PCKh"] <= hi, (factor, res["pckh"])
    keep = bonn["track"] != 0
    out = tmp_path / "dropped"
    _publish_bonn(out, dict(bonn, xy=bonn["xy"][keep], frame=bonn["frame"][keep]), bonn["track"][keep] + 1)
    rc, res = run_eval(out, bonn["path"], "--kind", "pckh")
    labelled = sum(sum(v > 0 for v in a["keypoints"][2::3]) for a in anns if a["track_id"] == 0)
    total = sum(sum(v > 0 for v in a["keypoints"][2::3]) for a in anns)
    assert res["pckh"]["PCKh"] == pytest.approx(1 - labelled / total) and res["pckh"]["paired"] == keep.sum()


# ---- bad inputs --------------------------------------------------------------------------------------------------


def test_exit_codes_for_bad_inputs(tmp_path, coco, crowd, capsys):
    path, gt, unit = coco
    out = tmp_path / "run"
    _publish_unit(out, unit, gt_rows(gt, unit))
    assert run_eval(tmp_path / "nothing-here", path)[0] == 2
    assert "not a raypose output folder" in capsys.readouterr().err
    assert run_eval(out, tmp_path / "missing.json")[0] == 2
    assert "ground truth not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert run_eval(out, bad)[0] == 2
    assert run_eval(out, path, "--video-id", "nope-00000000")[0] == 2
    assert "not found" in capsys.readouterr().err
    assert run_eval(out, crowd[0])[0] == 2  # CrowdPose GT: none of the COCO images match
    assert "matched an image" in capsys.readouterr().err
    assert run_eval(out, path, "--kind", "track")[0] == 2  # COCO GT has no track ids
    assert "track_id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate_main(["--output", str(out), "--gt", str(path), "--kind", "nope"])
    assert e.value.code == 2
