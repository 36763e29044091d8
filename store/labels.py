"""Person labels per image, read from a COCO keypoints file or from a raypose output folder (pseudo-labels).

Used by ``jobs.proposals`` (training samples for the SPPE, ``store.training``): both readers return the same plain
records (``ImageLabels``: one image, its persons' boxes, keypoints and visibility), so the proposal stage never knows
where a label came from except through ``label_kind`` and ``label_score``.

* ``read_coco_labels``: a COCO keypoints annotation file (``person_keypoints_*.json``, CrowdPose's files) plus the
  folder or URI prefix holding its images (image URI = ``<root>/<file_name>``). Persons are kept and converted as
  AlphaPose's training set does (``alphapose/datasets/mscoco.py`` ``_check_load_keypoints`` L67–127; spec
  ``alphapose.md`` §7.1): not crowd, at least one labelled joint, positive box area; ``x2 = x + w − 1`` (``bbox.py``
  ``bbox_xywh_to_xyxy``), clipped to ``[0, W − 1]`` × ``[0, H − 1]``; a joint is labelled when ``v > 0``.
* ``read_raypose_labels``: the keypoint table of a ``jobs.label`` output (``store.tables``), as pseudo-labels: a
  person is kept when its ``pose_score ≥ min_score``; its joints with ``keypoint_score ≥ min_keypoint_score`` are
  labelled (persons left with none are dropped); the box is the detector's. Image units and video frames are read
  (a video frame's ``ImageLabels.frame_index`` says which frame of ``image_uri``; ``pipelines.decode.video_frames``
  decodes it exactly as the labelling job did); ``video_frame_stride`` keeps every n-th frame of a video, since
  neighbouring frames are near duplicates.

Everything is read where the job's driver runs, before Ray starts, so a bad file is a clear error (``LabelError``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LabelError", "ImageLabels", "LabelSource", "read_coco_labels", "read_raypose_labels", "keypoint_set_of"]


class LabelError(ValueError):
    """A label input that cannot be used (which file, what is wrong)."""


@dataclass(frozen=True, eq=False)
class ImageLabels:
    """The labelled persons of one image.

    Attributes:
        source: the annotation file or raypose output the labels came from.
        image_id: the image's id there (COCO ``id``; ``"<video_id>:<frame_index>"`` for raypose outputs).
        image_uri: where the image is (local path or fsspec URI).
        width, height: the image size the labels refer to (0: unknown); a decoded image of another size is an error.
        keypoint_set: ``models.keypoints`` name (``"coco17"``, ``"crowdpose14"`` …).
        person_index: int64 ``[P]``, each person's index among its image's annotations (file order), kept stable
            when others are filtered out, so a sample's provenance does not depend on the filters.
        boxes_xyxy: float64 ``[P, 4]`` image pixels.
        keypoints: float64 ``[P, K, 2]`` (x, y) image pixels; visible: bool ``[P, K]`` (labelled joints).
        label_kind: ``"gt"`` or ``"pseudo"``; label_score: float64 ``[P]`` (the person score; NaN for ``"gt"``).
        frame_index: for a video frame, its index in the video ``image_uri`` (the labelling job's frame numbering);
            −1 for an image file.
    """

    source: str
    image_id: int | str
    image_uri: str
    width: int
    height: int
    keypoint_set: str
    person_index: np.ndarray
    boxes_xyxy: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    label_kind: str
    label_score: np.ndarray
    frame_index: int = -1

    @property
    def num_persons(self) -> int:
        return int(len(self.person_index))

    def to_dict(self) -> dict:
        """Plain JSON-able values (``from_dict`` restores the record exactly: floats by their shortest repr)."""
        return {
            "source": self.source,
            "image_id": self.image_id,
            "image_uri": self.image_uri,
            "width": self.width,
            "height": self.height,
            "keypoint_set": self.keypoint_set,
            "person_index": self.person_index.tolist(),
            "boxes_xyxy": self.boxes_xyxy.tolist(),
            "keypoints": self.keypoints.tolist(),
            "visible": self.visible.tolist(),
            "label_kind": self.label_kind,
            "label_score": [None if np.isnan(s) else float(s) for s in self.label_score],
            "frame_index": self.frame_index,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ImageLabels:
        p = len(d["person_index"])
        k = len(d["visible"][0]) if p else 0
        return cls(
            source=d["source"],
            image_id=d["image_id"],
            image_uri=d["image_uri"],
            width=int(d["width"]),
            height=int(d["height"]),
            keypoint_set=d["keypoint_set"],
            person_index=np.asarray(d["person_index"], np.int64).reshape(p),
            boxes_xyxy=np.asarray(d["boxes_xyxy"], np.float64).reshape(p, 4),
            keypoints=np.asarray(d["keypoints"], np.float64).reshape(p, k, 2),
            visible=np.asarray(d["visible"], bool).reshape(p, k),
            label_kind=d["label_kind"],
            label_score=np.asarray([np.nan if s is None else s for s in d["label_score"]], np.float64).reshape(p),
            frame_index=int(d.get("frame_index", -1)),
        )


@dataclass(frozen=True)
class LabelSource:
    """One label input, read: its images (sorted by ``str(image_id)``, raypose outputs by unit then frame index; only
    those with a kept person), its keypoint
    set, and counts of what was dropped (``skipped``: reason → count)."""

    source: str
    kind: str  # "gt" or "pseudo"
    keypoint_set: str
    images: tuple[ImageLabels, ...]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_persons(self) -> int:
        return sum(im.num_persons for im in self.images)


def keypoint_set_of(names: list[str] | None, num_joints: int) -> str:
    """The ``models.keypoints`` set whose joint names equal ``names`` (a COCO category's ``keypoints``), else the
    only set with ``num_joints`` joints; LabelError (listing the sets) when neither decides."""
    from models.keypoints import KEYPOINT_SETS

    if names:
        for ks in KEYPOINT_SETS.values():
            if list(ks.names) == list(names):
                return ks.name
    same = [ks.name for ks in KEYPOINT_SETS.values() if len(ks.names) == num_joints]
    if len(same) == 1:
        return same[0]
    known = ", ".join(f"{n} ({len(ks.names)})" for n, ks in KEYPOINT_SETS.items())
    raise LabelError(f"cannot tell the keypoint set of {num_joints} joints named {names!r}; known sets: {known}")


def _read_json(uri: str, storage_options: dict | None) -> object:
    import fsspec

    try:
        with fsspec.open(uri, "rt", **(storage_options or {})) as f:
            return json.load(f)
    except FileNotFoundError:
        raise LabelError(f"{uri}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabelError(f"{uri}: not a readable JSON file ({e})") from None


def read_coco_labels(gt_uri: str, images_root: str, storage_options: dict | None = None) -> LabelSource:
    """A COCO keypoints file → ``LabelSource`` of kind ``"gt"`` (module docstring for the rules).

    Raises:
        LabelError: unreadable file, not COCO (``images``/``annotations`` lists), no person with keypoints, or
            mixed keypoint counts.
    """
    from store.writers import join_uri

    data = _read_json(gt_uri, storage_options)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise LabelError(f"{gt_uri}: not a COCO annotation file (needs lists 'images' and 'annotations')")
    names = None
    for c in data.get("categories") or []:
        if isinstance(c, dict) and c.get("keypoints"):
            names = list(c["keypoints"])
            break
    by_image: dict[object, list[tuple[int, dict]]] = {}
    counts: dict[object, int] = {}
    for a in data["annotations"]:
        if not isinstance(a, dict) or "image_id" not in a:
            raise LabelError(f"{gt_uri}: an annotation without image_id: {str(a)[:80]}")
        i = counts.get(a["image_id"], 0)
        counts[a["image_id"]] = i + 1
        by_image.setdefault(a["image_id"], []).append((i, a))
    skipped = {"crowd": 0, "no_keypoints": 0, "empty_box": 0, "no_image_entry": 0}
    known = {im.get("id") for im in data["images"] if isinstance(im, dict)}
    skipped["no_image_entry"] = sum(len(v) for k, v in by_image.items() if k not in known)
    num_joints = None
    images = []
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise LabelError(f"{gt_uri}: an image entry without id/file_name: {str(im)[:80]}")
        w, h = int(im.get("width", 0)), int(im.get("height", 0))
        rows = []
        for idx, a in by_image.get(im["id"], []):
            if a.get("iscrowd", 0):
                skipped["crowd"] += 1
                continue
            kp = np.asarray(a.get("keypoints") or [], np.float64).reshape(-1, 3)
            if kp.size == 0 or not (kp[:, 2] > 0).any():
                skipped["no_keypoints"] += 1
                continue
            if num_joints is None:
                num_joints = len(kp)
            elif len(kp) != num_joints:
                raise LabelError(f"{gt_uri}: annotation {a.get('id')} has {len(kp)} joints, others {num_joints}")
            x, y, bw, bh = (float(v) for v in a["bbox"])
            # AlphaPose bbox_xywh_to_xyxy (x2 = x + w − 1) and bbox_clip_xyxy (to [0, W − 1] × [0, H − 1])
            box = np.array([x, y, x + max(bw - 1, 0), y + max(bh - 1, 0)])
            if w > 0 and h > 0:
                box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
            if not (box[2] > box[0] and box[3] > box[1]) or a.get("area", 1) <= 0:
                skipped["empty_box"] += 1
                continue
            rows.append((idx, box, kp))
        if rows:
            images.append((im, w, h, rows))
    if num_joints is None:
        raise LabelError(f"{gt_uri}: no usable person annotation with keypoints (skipped: {skipped})")
    kset = keypoint_set_of(names, num_joints)
    out = []
    for im, w, h, rows in images:
        p = len(rows)
        kp = np.stack([r[2] for r in rows])
        out.append(
            ImageLabels(
                source=gt_uri,
                image_id=im["id"],
                image_uri=join_uri(images_root, str(im["file_name"])),
                width=w,
                height=h,
                keypoint_set=kset,
                person_index=np.array([r[0] for r in rows], np.int64),
                boxes_xyxy=np.stack([r[1] for r in rows]),
                keypoints=kp[:, :, :2].copy(),
                visible=kp[:, :, 2] > 0,  # AlphaPose: min(1, v)
                label_kind="gt",
                label_score=np.full(p, np.nan),
            )
        )
    out.sort(key=lambda r: str(r.image_id))
    return LabelSource(source=gt_uri, kind="gt", keypoint_set=kset, images=tuple(out), skipped=skipped)


_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")


def read_raypose_labels(
    output: str,
    *,
    min_score: float = 0.5,
    min_keypoint_score: float = 0.5,
    video_frame_stride: int = 1,
    storage_options: dict | None = None,
) -> LabelSource:
    """A ``jobs.label`` output folder's committed keypoint tables → ``LabelSource`` of kind ``"pseudo"``.

    ``video_frame_stride``: keep video frames whose index is a multiple of it (1: all). Images are sorted by
    ``(unit, frame index)``, so a shard holds a video's frames in decoding order.

    Raises:
        LabelError: not a readable output folder, several keypoint sets, or no person above the thresholds.
    """
    from store.tables import load_output, pose_arrays

    if video_frame_stride < 1:
        raise LabelError(f"video_frame_stride must be ≥ 1, got {video_frame_stride}")
    try:
        tables = load_output(output, committed_only=True, storage_options=storage_options)
        arr = pose_arrays(tables.poses)
    except Exception as e:  # noqa: BLE001 - whatever makes the folder unreadable, it is this input's problem
        raise LabelError(f"{output}: not a readable raypose output folder ({e})") from None
    if tables.random_weights:
        raise LabelError(f"{output}: labelled with random weights; its keypoints are no pseudo-labels")
    sets = sorted(set(arr.keypoint_set.tolist()))
    if len(sets) > 1:
        raise LabelError(f"{output}: several keypoint sets {sets}; pseudo-labels must share one")
    skipped = {"video_frame_stride": 0, "low_score": 0, "no_keypoints": 0}
    is_video = np.array([str(u).lower().endswith(_VIDEO_SUFFIXES) for u in arr.source_uri.tolist()], bool)
    strided = is_video & (arr.frame_index % video_frame_stride != 0)
    skipped["video_frame_stride"] = int(strided.sum())
    groups: dict[tuple[str, int], list[int]] = {}
    for i in np.flatnonzero(~strided).tolist():
        groups.setdefault((str(arr.video_id[i]), int(arr.frame_index[i])), []).append(i)
    out = []
    for (vid, frame), rows in groups.items():
        keep = []
        for i in rows:
            if not float(arr.pose_score[i]) >= min_score:
                skipped["low_score"] += 1
                continue
            vis = (arr.keypoint_scores[i] >= min_keypoint_score) & np.isfinite(arr.keypoints[i]).all(axis=1)
            if not vis.any():
                skipped["no_keypoints"] += 1
                continue
            box = np.asarray(arr.box_xyxy[i], np.float64)
            if not (box[2] > box[0] and box[3] > box[1]):
                skipped["no_keypoints"] += 1
                continue
            keep.append((i, vis))
        if not keep:
            continue
        idx = [i for i, _ in keep]
        out.append(
            ImageLabels(
                source=output,
                image_id=f"{vid}:{frame}",
                image_uri=str(arr.source_uri[idx[0]]),
                width=int(arr.image_width[idx[0]]),
                height=int(arr.image_height[idx[0]]),
                keypoint_set=sets[0],
                person_index=arr.person_index[idx].astype(np.int64),
                boxes_xyxy=arr.box_xyxy[idx].astype(np.float64),
                keypoints=arr.keypoints[idx].astype(np.float64),
                visible=np.stack([v for _, v in keep]),
                label_kind="pseudo",
                label_score=arr.pose_score[idx].astype(np.float64),
                frame_index=int(frame) if is_video[idx[0]] else -1,
            )
        )
    if not out:
        raise LabelError(
            f"{output}: no person with pose_score ≥ {min_score} and a keypoint score ≥ {min_keypoint_score} in an "
            f"image or video frame (skipped: {skipped})"
        )
    out.sort(key=lambda r: (str(r.image_id).rsplit(":", 1)[0], int(str(r.image_id).rsplit(":", 1)[1])))
    return LabelSource(source=output, kind="pseudo", keypoint_set=sets[0], images=tuple(out), skipped=skipped)
