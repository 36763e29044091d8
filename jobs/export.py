"""Export a labelled output folder to other tools' formats: COCO results, AlphaPose, PoseTrack 2018, OpenPose.

    python -m jobs.export --output OUT --format coco|alphapose|posetrack|openpose --dest PATH
                          [--video-id ID ...] [--gt GT.json [--match MODE]] [--per-video] [--openpose-body 18|25]

Reads the keypoint and frames tables (``store.tables``) and writes each file atomically (local or fsspec
URIs). Rows are written in (video, frame, person_index) order. Exit codes: 0 done, 2 bad input (paths, unknown
video id, a keypoint set the format cannot hold, file names that would collide), 1 the export failed.

Frame names: an image unit's frame is its image's base name (``source_uri``); a video's frame ``i`` is
``"<i>.jpg"``, AlphaPose's naming of video frames (``alphapose/utils/detector.py``).

**Formats** (``--dest`` is a file for ``coco``/``alphapose``, a folder for the others and with ``--per-video``):

* ``coco``: the COCO keypoint results list pycocotools' ``loadRes`` reads: ``{image_id, category_id: 1,
  keypoints: [x, y, c]·K, score: pose_score}`` (no ``bbox``: with one, ``loadRes`` would treat the results as
  box detections). ``image_id`` is the frame name (string); with ``--gt`` it is the GT's integer image id,
  frames are matched as ``jobs.evaluate`` matches them (``--match``), keypoints are converted to the GT's keypoint
  set, and rows of unmatched frames are left out (counted in the log).
* ``alphapose``: ``alphapose-results.json`` as AlphaPose's ``write_json`` (``alphapose/utils/pPose_nms.py``) writes
  it: ``{image_id: frame name, category_id: 1, keypoints: [x, y, c]·K (merged keypoint scores), score: pose_score,
  box: [x1, y1, w, h] of the detector box (w = x2 − x1, h = y2 − y1 in Python floats), idx}``; frames without
  persons produce no record. ``idx`` is the int track id when the row is tracked (as with
  ``--pose_track``/``--pose_flow``). **Deviation from AlphaPose** (``write_json`` and ``pose_nms_body``): an
  untracked row gets ``idx: 0`` (an int), not AlphaPose's ``[0.0]`` / ``[[0.0], [0.0], …]`` list of merged
  proposals' ids whose nesting depends on the cluster size (a bug of ``pose_nms_body``'s ``bbox_ids``); raypose
  track ids start at 1, so 0 always means "untracked".
* ``posetrack``: one PoseTrack 2018 JSON per video, ``<dest>/<name>.json`` (``name`` = the video file's stem or
  the image folder's name, as poseval wants prediction files named like the GT's; the video id when names
  collide). ``images``: every frame of the frames table, ``{file_name: "<name>/<base name>", id = frame_id =
  frame_index, frame_index, vid_id: name, nframes, is_labeled: has persons, width, height}``; a video frame's base
  name is PoseTrack's ``"%06d.jpg"``. ``annotations``: ``{id, image_id, category_id: 1, track_id, keypoints:
  [x, y, v]·17 in PoseTrack-18 order, scores: [17], score: pose_score, bbox: detector box [x, y, w, h]}`` with
  ``v = 1`` for a joint the model predicts and ``0, 0, 0`` (score 0) for one it does not. Joints are taken by
  name; ``head_top`` ← ``head`` (Halpe, CrowdPose) and ``head_bottom`` ← ``neck``/``upper_neck`` (as
  ``models.keypoints`` maps PoseTrack's head_bottom to CrowdPose's neck). COCO-17 keeps nose, ears and the 12
  limb joints and drops the eyes; its head_bottom/head_top are not predicted and are written as zeros with v = 0.
  An untracked row gets ``track_id: -1`` (PoseTrack needs one; such a file is not valid for tracking
  evaluation, and the log says so). Image-folder frames without persons whose file name is unknown (folder not
  listable) are left out, with a warning.
* ``openpose``: one file per frame of the frames table, ``<dest>/<video_id>_<frame:012d>_keypoints.json``, as
  OpenPose 1.3+ writes them: ``{"version": 1.3, "people": [{"person_id": [-1 or track id],
  "pose_keypoints_2d": [x, y, c]·J, "face_keypoints_2d": [], "hand_left_keypoints_2d": [], …}]}`` (the 3-D lists
  empty; face and hands filled from whole-body keypoint sets, ``openpose_face_and_hands``, empty otherwise).
  ``--openpose-body 18`` (default for COCO-17): COCO-18 order built as AlphaPose's
  ``--format open`` does (``write_json``): the neck, mean of joints 5 and 6 in x, y and c, is appended and the 18
  joints are taken in the order 0, 17, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3. ``--openpose-body
  25`` (default for Halpe-26 and Halpe-136): BODY_25, taken by name from Halpe-26/136, whose own neck and mid-hip
  ("hip") are used. Other keypoint sets have no OpenPose body: exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np

__all__ = [
    "main",
    "ExportError",
    "FORMATS",
    "frame_name",
    "coco_results",
    "alphapose_results",
    "to_posetrack18",
    "posetrack_document",
    "openpose_body",
    "openpose_documents",
    "OPENPOSE_18_ORDER",
    "OPENPOSE_BODY25_NAMES",
]

logger = logging.getLogger("raypose.export")

FORMATS = ("coco", "alphapose", "posetrack", "openpose")
#: AlphaPose's ``--format open``/``cmu`` order over COCO-17 + neck (index 17) (``write_json``).
OPENPOSE_18_ORDER = (0, 17, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
#: OpenPose BODY_25, as Halpe-26 names: neck and mid-hip are Halpe's own "neck" and "hip".
OPENPOSE_BODY25_NAMES = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "hip",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
    "left_big_toe",
    "left_small_toe",
    "left_heel",
    "right_big_toe",
    "right_small_toe",
    "right_heel",
)
OPENPOSE_VERSION = 1.3
_OPENPOSE_EMPTY = (
    "face_keypoints_2d",
    "hand_left_keypoints_2d",
    "hand_right_keypoints_2d",
    "pose_keypoints_3d",
    "face_keypoints_3d",
    "hand_left_keypoints_3d",
    "hand_right_keypoints_3d",
)
# PoseTrack-18 joint ← source joint names tried in order (the rest are taken by identical name).
_POSETRACK_SOURCES = {"head_bottom": ("head_bottom", "neck", "upper_neck"), "head_top": ("head_top", "head")}


class ExportError(ValueError):
    """Inputs that cannot be exported as asked: exit code 2."""


def frame_name(vf, frame_index: int, video_pattern: str = "{}.jpg") -> str | None:
    """The base name of a frame: the image's for image units, ``video_pattern.format(frame_index)`` for videos
    (AlphaPose's ``"<i>.jpg"`` by default); None when an image frame's file is unknown."""
    if vf.kind == "video":
        return video_pattern.format(int(frame_index))
    uri = vf.frame_uris.get(int(frame_index))
    return uri.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if uri else None


def _flat_kps(keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """float64 ``[P, 3K]``: x, y, c per keypoint (float32 values widened exactly)."""
    return np.concatenate([keypoints.astype(np.float64), scores.astype(np.float64)[..., None]], axis=-1).reshape(
        len(keypoints), -1
    )


def coco_results(arr, vf) -> list[dict]:
    """COCO keypoint results of one video, ``image_id`` = frame name, keypoints in the table's keypoint set."""
    flat = _flat_kps(arr.keypoints, arr.keypoint_scores)
    return [
        {
            "image_id": frame_name(vf, f),
            "category_id": 1,
            "keypoints": flat[r].tolist(),
            "score": float(arr.pose_score[r]),
        }
        for r, f in enumerate(arr.frame_index.tolist())
    ]


def alphapose_results(arr, vf) -> list[dict]:
    """AlphaPose ``alphapose-results.json`` records of one video (module docstring; AlphaPose's
    ``write_json``)."""
    flat = _flat_kps(arr.keypoints, arr.keypoint_scores)
    out = []
    for r, f in enumerate(arr.frame_index.tolist()):
        x1, y1, x2, y2 = (float(v) for v in arr.box_xyxy[r])
        out.append(
            {
                "image_id": frame_name(vf, f),
                "category_id": 1,
                "keypoints": flat[r].tolist(),
                "score": float(arr.pose_score[r]),
                "box": [x1, y1, x2 - x1, y2 - y1],
                "idx": int(arr.track_id[r]),
            }
        )
    return out


def to_posetrack18(keypoints: np.ndarray, scores: np.ndarray, src: str):
    """Keypoints of set ``src`` in PoseTrack-18 order (module docstring for the joint mapping).

    Args:
        keypoints: float ``[P, K, 2]``; scores: float ``[P, K]``; src: keypoint-set name.
    Returns:
        (float64 ``[P, 17, 2]``, float64 ``[P, 17]``, bool ``[17]`` predicted joints); joints the source does not
        have are 0.
    """
    from models.keypoints import POSETRACK_18, get_keypoint_set

    names = get_keypoint_set(src).names
    idx = []
    for n in POSETRACK_18.names:
        cands = _POSETRACK_SOURCES.get(n, (n,))
        idx.append(next((names.index(c) for c in cands if c in names), -1))
    idx = np.asarray(idx)
    have = idx >= 0
    p = len(keypoints)
    kps = np.zeros((p, len(idx), 2))
    sc = np.zeros((p, len(idx)))
    kps[:, have] = np.asarray(keypoints, np.float64)[:, idx[have]]
    sc[:, have] = np.asarray(scores, np.float64)[:, idx[have]]
    return kps, sc, have


def posetrack_document(arr, vf, frames, name: str) -> tuple[dict, int]:
    """PoseTrack 2018 JSON of one video (module docstring).

    Args:
        arr: the video's ``PoseArrays``; vf: its ``VideoFrames``; frames: its frames table; name: the sequence name.
    Returns:
        (document, number of frames left out because their file name is unknown).
    """
    from models.keypoints import POSETRACK_18

    n_persons = dict(zip(frames.column("frame_index").to_pylist(), frames.column("n_persons").to_pylist()))
    size = {}
    for r, f in enumerate(arr.frame_index.tolist()):
        size.setdefault(f, (int(arr.image_width[r]), int(arr.image_height[r])))
    video_size = next(iter(size.values()), None) if vf.kind == "video" else None
    images, skipped = [], 0
    for f in vf.frame_indices.tolist():
        base = frame_name(vf, f, "{:06d}.jpg")
        if base is None:
            skipped += 1
            continue
        img = {
            "file_name": f"{name}/{base}",
            "id": f,
            "frame_id": f,
            "frame_index": f,
            "vid_id": name,
            "nframes": len(vf.frame_indices),
            "is_labeled": bool(n_persons.get(f, 0)),
        }
        wh = size.get(f, video_size)
        if wh is not None:
            img["width"], img["height"] = wh
        images.append(img)
    kps, sc, have = to_posetrack18(
        arr.keypoints, arr.keypoint_scores, str(arr.keypoint_set[0]) if len(arr) else "posetrack18"
    )
    vis = have.astype(np.float64)
    anns = []
    for r, f in enumerate(arr.frame_index.tolist()):
        x1, y1, x2, y2 = (float(v) for v in arr.box_xyxy[r])
        t = int(arr.track_id[r])
        anns.append(
            {
                "id": r + 1,
                "image_id": f,
                "category_id": 1,
                "track_id": t if t > 0 else -1,
                "keypoints": np.concatenate([kps[r], vis[:, None]], axis=1).reshape(-1).tolist(),
                "scores": sc[r].tolist(),
                "score": float(arr.pose_score[r]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
        )
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(POSETRACK_18.names),
        "skeleton": [[a + 1, b + 1] for a, b in POSETRACK_18.skeleton],
    }
    return {"images": images, "annotations": anns, "categories": [category]}, skipped


def openpose_body(keypoints: np.ndarray, scores: np.ndarray, src: str, body: int) -> np.ndarray:
    """OpenPose body joints (module docstring).

    Args:
        keypoints: float ``[P, K, 2]``; scores ``[P, K]``; src: keypoint-set name; body: 18 or 25.
    Returns:
        float64 ``[P, body, 3]`` (x, y, c).
    Raises:
        ExportError: ``src`` has no OpenPose body of that size.
    """
    from models.keypoints import COCO_17, get_keypoint_set

    ks = get_keypoint_set(src)
    xyc = np.concatenate([np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)[..., None]], axis=-1)
    if body == 18 and ks.names[:17] == COCO_17.names:
        coco = xyc[:, :17]
        neck = (coco[:, 5] + coco[:, 6]) / 2.0  # AlphaPose: mean of the shoulders in x, y and c
        return np.concatenate([coco, neck[:, None]], axis=1)[:, list(OPENPOSE_18_ORDER)]
    if body == 25 and all(n in ks.names for n in OPENPOSE_BODY25_NAMES):
        return xyc[:, [ks.index(n) for n in OPENPOSE_BODY25_NAMES]]
    raise ExportError(
        f"keypoint set {src} has no OpenPose {body}-joint body; 18 needs COCO-17 (or Halpe-26), 25 needs Halpe-26"
    )


def openpose_face_and_hands(keypoints: np.ndarray, scores: np.ndarray, src: str) -> dict[str, np.ndarray]:
    """OpenPose's ``face_keypoints_2d`` (70 points: the 68 iBUG-300W points, then two pupils, which no AlphaPose set
    has: written as zeros) and ``hand_left/right_keypoints_2d`` (21 points: wrist, then four per finger from thumb
    to little finger, the order of AlphaPose's and COCO-WholeBody's hands) of a whole-body set, as float64
    ``[P, n, 3]`` (x, y, c); only the parts the set has (Halpe-136 and COCO-WholeBody-133: all three; Halpe-68:
    hands). AlphaPose's own ``--format open`` leaves them empty."""
    from models.keypoints import get_keypoint_set

    ks = get_keypoint_set(src)
    xyc = np.concatenate([np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)[..., None]], axis=-1)
    parts = {p for p, _, _ in ks.parts}
    out = {}
    if "face" in parts:
        face = xyc[:, list(ks.part("face"))]
        out["face_keypoints_2d"] = np.concatenate([face, np.zeros((len(xyc), 70 - face.shape[1], 3))], axis=1)
    for side in ("left", "right"):
        if f"{side}_hand" in parts:
            out[f"hand_{side}_keypoints_2d"] = xyc[:, list(ks.part(f"{side}_hand"))]
    return out


def openpose_documents(arr, vf, video_id: str, body: int) -> dict[str, dict]:
    """One OpenPose JSON per frame of the video (empty frames included): file name → document."""
    joints = (
        openpose_body(arr.keypoints, arr.keypoint_scores, str(arr.keypoint_set[0]), body)
        if len(arr)
        else np.zeros((0, body, 3))
    )
    extra = openpose_face_and_hands(arr.keypoints, arr.keypoint_scores, str(arr.keypoint_set[0])) if len(arr) else {}
    people: dict[int, list] = {}
    for r, f in enumerate(arr.frame_index.tolist()):
        t = int(arr.track_id[r])
        person = {"person_id": [t if t > 0 else -1], "pose_keypoints_2d": joints[r].reshape(-1).tolist()}
        person.update({k: extra[k][r].reshape(-1).tolist() if k in extra else [] for k in _OPENPOSE_EMPTY})
        people.setdefault(f, []).append(person)
    return {
        f"{video_id}_{f:012d}_keypoints.json": {"version": OPENPOSE_VERSION, "people": people.get(f, [])}
        for f in vf.frame_indices.tolist()
    }


def _default_body(keypoint_set: str) -> int:
    return 25 if keypoint_set in ("halpe26", "halpe136", "halpe68") else 18


def _unique_names(videos: dict) -> dict[str, str]:
    names = {v: (vf.name or v) for v, vf in videos.items()}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {v: (n if counts[n] == 1 else v) for v, n in names.items()}


def _single_list(per_video: dict[str, list[dict]]) -> list[dict]:
    seen: dict = {}
    for vid, records in per_video.items():
        for rec in records:
            other = seen.setdefault(rec["image_id"], vid)
            if other != vid:
                raise ExportError(
                    f"videos {other} and {vid} both have frames named {rec['image_id']!r}: one list "
                    "cannot tell them apart; export one video (--video-id), use --per-video, or give "
                    "--gt for GT image ids"
                )
    return [rec for records in per_video.values() for rec in records]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="output folder of jobs.label (local or s3://)")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument(
        "--dest", required=True, help="file (coco, alphapose) or folder (posetrack, openpose, --per-video) to write"
    )
    parser.add_argument(
        "--video-id",
        action="append",
        dest="video_ids",
        metavar="ID",
        help="export only this video (repeatable; default: all)",
    )
    parser.add_argument("--gt", help="coco: GT JSON whose integer image ids (and keypoint set) to use")
    parser.add_argument("--match", default="auto", help="with --gt: auto, file_name, id or frame (as jobs.evaluate)")
    parser.add_argument(
        "--per-video",
        action="store_true",
        help="coco/alphapose: one file per video under --dest (<id>.json; <id>/alphapose-results.json)",
    )
    parser.add_argument(
        "--openpose-body",
        type=int,
        choices=(18, 25),
        help="openpose: 18 (COCO-18) or 25 (BODY_25); default 18 for COCO-17, 25 for Halpe-26",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from jobs.evaluate import EvaluationError, load_ground_truth, match_frames, prediction_results
    from store.tables import (
        OutputNotFoundError,
        default_storage_options,
        load_output,
        pose_arrays,
        split_by_video,
        video_frames,
    )
    from store.writers import join_uri, put_atomic

    so = default_storage_options()
    # ---- validate and build every document in memory; write only when all of them are good ---------------------
    try:
        if args.gt and args.fmt != "coco":
            raise ExportError(f"--gt applies to --format coco only (got --format {args.fmt})")
        tables = load_output(args.output, args.video_ids, storage_options=so)
        if not tables.video_ids:
            raise ExportError(f"no videos under {args.output}")
        poses_by_video = split_by_video(tables.poses)
        frames_by_video = split_by_video(tables.frames)
        empty_poses, empty_frames = tables.poses.slice(0, 0), tables.frames.slice(0, 0)
        videos = {
            v: video_frames(
                args.output,
                v,
                poses=poses_by_video.get(v, empty_poses),
                frames=frames_by_video.get(v, empty_frames),
                manifest=tables.manifests.get(v),
                storage_options=so,
            )
            for v in tables.video_ids
        }
        arrays = {v: pose_arrays(poses_by_video.get(v, empty_poses)) for v in tables.video_ids}
        files: dict[str, object] = {}
        if args.fmt == "coco" and args.gt:
            gt = load_ground_truth(args.gt, so)
            match = match_frames(videos, gt, args.match)
            per_video = {v: prediction_results({v: arrays[v]}, match, gt) for v in tables.video_ids}
            left_out = sum(len(arrays[v]) for v in tables.video_ids) - sum(len(r) for r in per_video.values())
            if left_out:
                logger.warning("%d row(s) are in frames that match no image of %s: left out", left_out, args.gt)
        elif args.fmt in ("coco", "alphapose"):
            build = coco_results if args.fmt == "coco" else alphapose_results
            per_video = {v: build(arrays[v], videos[v]) for v in tables.video_ids}
            unnamed = sum(1 for recs in per_video.values() for r in recs if r["image_id"] is None)
            if unnamed:  # cannot happen for rows (each has its source_uri); guards a table without source_uri
                raise ExportError(f"{unnamed} row(s) have no file name")
        if args.fmt in ("coco", "alphapose"):
            if args.per_video:
                leaf = "{}.json" if args.fmt == "coco" else "{}/alphapose-results.json"
                files = {join_uri(args.dest, leaf.format(v)): recs for v, recs in per_video.items()}
            else:
                files = {
                    args.dest: (per_video[tables.video_ids[0]] if len(per_video) == 1 else _single_list(per_video))
                }
        elif args.fmt == "posetrack":
            names = _unique_names(videos)
            for v in tables.video_ids:
                doc, skipped = posetrack_document(arrays[v], videos[v], frames_by_video.get(v, empty_frames), names[v])
                if skipped:
                    logger.warning(
                        "video %s: %d frame(s) without persons left out (image file names unknown)", v, skipped
                    )
                if len(arrays[v]) and not arrays[v].tracked.all():
                    logger.warning(
                        "video %s: %d untracked row(s) written with track_id -1; the file is not valid "
                        "for PoseTrack tracking evaluation",
                        v,
                        int((~arrays[v].tracked).sum()),
                    )
                files[join_uri(args.dest, f"{names[v]}.json")] = doc
        else:
            for v in tables.video_ids:
                ks = str(arrays[v].keypoint_set[0]) if len(arrays[v]) else "coco17"
                body = args.openpose_body or _default_body(ks)
                for fname, doc in openpose_documents(arrays[v], videos[v], v, body).items():
                    files[join_uri(args.dest, fname)] = doc
    except (ExportError, EvaluationError, OutputNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    try:
        for uri, obj in files.items():
            put_atomic(json.dumps(obj).encode(), uri, so)
    except OSError as e:
        print(f"error: cannot write under {args.dest}: {e}", file=sys.stderr)
        return 2
    except Exception:
        logger.exception("export failed")
        return 1
    rows = sum(len(a) for a in arrays.values())
    if tables.random_weights:
        print("NOTE: random weights were used for these labels: the keypoints are not pose estimates.")
    print(
        f"{args.fmt}: {rows} person row(s) of {len(tables.video_ids)} video(s) → {len(files)} file(s) under {args.dest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
