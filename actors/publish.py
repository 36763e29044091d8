"""The per-video stage: sort a video's frame rows, track, build its tables and publish them atomically.

Used as ``groupby("video_id").map_groups(publish_video, ...)``: each call receives every row of one video (in no
particular order, ``ray-notes.md`` §3), and returns one summary row. Publishing follows ``pipelines.publish``:
keypoint table, frames table, then the commit marker. A video whose frames could not be read at all is not
published (no marker), so a rerun tries it again; a video with some bad frames is published with those frames'
``status`` in the frames table and the errors in the summary.

Every exception inside is caught and turned into the video's error summary: one bad video never fails the others
hashed into the same block.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from actors.common import rows_of
from models.poseflow import PoseFlowParams, PoseFlowTracker
from pipelines.publish import Manifest, join_uri, write_manifest, write_table_atomic
from pipelines.schema import frames_table, keypoint_table, table_metadata

logger = logging.getLogger(__name__)

__all__ = ["PublishSpec", "TrackAndPublish", "publish_video"]

_TIME_COLUMNS = ("t_decode", "t_detect", "t_sppe", "t_pose_nms")
_FRAME_STATUS = {"probe": "decode_error", "decode": "decode_error", "detect": "detect_error"}


@dataclass(frozen=True, kw_only=True)
class PublishSpec:
    """What the per-video stage needs to know about the run (plain data, pickled to the actors)."""

    output: str
    run_id: str
    config_hash: str
    fingerprints: dict[str, str]  # video_id → input fingerprint
    keypoint_set: str
    sppe: str
    sppe_sha256: str
    random_weights: bool
    config: dict = field(default_factory=dict)
    storage_options: dict = field(default_factory=dict)
    tracking: PoseFlowParams | None = None  # None: no tracking (track_id stays null)


def _error(video_id: str, uri: str, shard: int, frame: int, stage: str, message: str) -> dict:
    return {"video_id": video_id, "source_uri": uri, "shard_index": int(shard), "frame_index": int(frame),
            "stage": stage, "message": message}


class TrackAndPublish:
    """``__init__`` keeps the run spec; ``__call__`` handles one video's rows and returns its summary row."""

    def __init__(self, spec: PublishSpec) -> None:
        self.spec = spec

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        video_id = str(batch["video_id"][0])
        uri = str(batch["unit_uri"][0])
        try:
            summary = self._publish(video_id, batch)
        except Exception as e:  # a bad video becomes an error summary; the other videos go on
            logger.exception("publishing %s failed", video_id)
            summary = {
                "published": False, "num_frames": 0, "num_persons": 0,
                "errors": [_error(video_id, uri, -1, -1, "publish", f"{type(e).__name__}: {e}")], "seconds": {},
            }
        return {
            "video_id": np.array([video_id], dtype=object),
            "source_uri": np.array([uri], dtype=object),
            "published": np.array([summary["published"]]),
            "num_frames": np.array([summary["num_frames"]], np.int64),
            "num_persons": np.array([summary["num_persons"]], np.int64),
            "num_errors": np.array([len(summary["errors"])], np.int64),
            "errors_json": np.array([json.dumps(summary["errors"])], dtype=object),
            "stage_seconds_json": np.array([json.dumps(summary["seconds"])], dtype=object),
        }

    def _track(self, batch, good: list[int], kps, k_scores, p_scores) -> np.ndarray:
        """PoseFlow over the video's frames in frame order (pose-only correspondences), ids per kept person.

        Where the video lives while it is tracked: this stage receives one video's rows through ``map_groups``
        (``ray-notes.md`` §3). The rows hold poses only (about 1 KB per frame; pixels never reach the groupby),
        so a 10-minute 30 fps video is ~20 MB here; the tracker itself keeps only its ``link_len`` window.
        """
        tracker = PoseFlowTracker(self.spec.tracking)
        ids = []
        for r in good:
            size = (int(batch["image_width"][r]), int(batch["image_height"][r]))
            ids.append(tracker.update(np.asarray(kps[r], np.float64), np.asarray(k_scores[r], np.float64),
                                      np.asarray(p_scores[r], np.float64), image_size=size))
        return np.concatenate(ids) if ids else np.zeros(0, np.int64)

    def _publish(self, video_id: str, batch: dict[str, np.ndarray]) -> dict:
        spec = self.spec
        t0 = time.perf_counter()
        uri = str(batch["unit_uri"][0])
        num_frames = int(np.max(batch["num_frames"]))
        frame_index = np.asarray(batch["frame_index"], np.int64)
        errors_col = [str(e) for e in batch["error"]]
        order = np.argsort(frame_index, kind="stable")
        errors: list[dict] = []
        status: dict[int, str] = {}
        rows: dict[int, int] = {}  # frame index → row of its good result
        for r in order:
            f = int(frame_index[r])
            if errors_col[r]:
                stage = str(batch["stage"][r]) or "unknown"
                errors.append(_error(video_id, str(batch["source_uri"][r]), int(batch["shard_index"][r]), f, stage,
                                     errors_col[r]))
                if f >= 0:
                    status[f] = _FRAME_STATUS.get(stage, "pose_error")
            elif f in rows:
                continue  # a retried task delivered this frame twice: keep one copy
            else:
                rows[f] = int(r)
                status[f] = "ok"
        if not rows:
            if not errors:
                errors.append(_error(video_id, uri, -1, -1, "decode", "no frames decoded"))
            return {"published": False, "num_frames": 0, "num_persons": 0, "errors": errors, "seconds": {}}
        missing = [f for f in range(num_frames) if f not in status]
        if missing:
            errors.append(_error(video_id, uri, -1, missing[0], "decode",
                                 f"{len(missing)} of {num_frames} frames not decoded (first missing: {missing[0]})"))
        for f in missing:
            status[f] = "missing"

        good = [rows[f] for f in sorted(rows)]
        kps = rows_of(batch["keypoints"])
        k_scores = rows_of(batch["keypoint_scores"])
        boxes = rows_of(batch["boxes_xyxy"])
        b_scores = rows_of(batch["box_scores"])
        p_scores = rows_of(batch["pose_scores"])
        counts = np.array([len(kps[r]) for r in good], np.int64)
        rep = np.repeat(np.asarray(good, np.int64), counts)
        k = next((kps[r].shape[1] for r in good if kps[r].ndim == 3), 0)

        def cat(arrs, shape, dtype=np.float32):
            parts = [np.asarray(arrs[r], dtype).reshape(-1, *shape) for r in good]
            return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

        track_ids = self._track(batch, good, kps, k_scores, p_scores) if spec.tracking is not None else None
        detector = str(batch["detector"][good[0]])
        det_sha = str(batch["detector_weights"][good[0]])
        random_weights = spec.random_weights or det_sha == "random"
        md = table_metadata(random_weights=random_weights, config=spec.config,
                            extra={"run_id": spec.run_id, "config_hash": spec.config_hash, "video_id": video_id})
        table = keypoint_table(
            source_uri=np.asarray(batch["source_uri"], dtype=object)[rep],
            frame_index=frame_index[rep],
            timestamp_s=np.asarray(batch["timestamp_s"], np.float64)[rep],
            image_width=np.asarray(batch["image_width"])[rep],
            image_height=np.asarray(batch["image_height"])[rep],
            person_index=np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0),
            track_id=track_ids,
            box_xyxy=cat(boxes, (4,)),
            box_score=cat(b_scores, ()),
            keypoints=cat(kps, (k, 2)),
            keypoint_scores=cat(k_scores, (k,)),
            pose_score=cat(p_scores, ()),
            keypoint_set=spec.keypoint_set,
            detector=detector,
            detector_sha256=det_sha,
            sppe=spec.sppe,
            sppe_sha256=spec.sppe_sha256,
            metadata=md,
        )
        ts_by_frame = {int(frame_index[r]): float(batch["timestamp_s"][r]) for r in good}
        all_frames = np.arange(num_frames, dtype=np.int64)
        n_by_frame = dict(zip(sorted(rows), counts.tolist()))
        ftable = frames_table(
            all_frames,
            np.array([ts_by_frame.get(int(f), np.nan) for f in all_frames]),
            np.array([n_by_frame.get(int(f), 0) for f in all_frames]),
            [status[int(f)] for f in all_frames],
            metadata=md,
        )
        part = f"video_id={video_id}/part-0.parquet"
        files = (f"poses/{part}", f"frames/{part}")
        write_table_atomic(table, join_uri(spec.output, files[0]), spec.storage_options)
        write_table_atomic(ftable, join_uri(spec.output, files[1]), spec.storage_options)
        seconds = {c[2:]: float(np.sum(batch[c][good])) for c in _TIME_COLUMNS if c in batch}
        seconds["track_and_publish"] = time.perf_counter() - t0
        write_manifest(spec.output, Manifest(
            video_id=video_id, source_uri=uri, fingerprint=spec.fingerprints.get(video_id, ""),
            config_hash=spec.config_hash, run_id=spec.run_id, num_frames=num_frames, num_persons=int(counts.sum()),
            num_errors=len(errors), files=files, random_weights=random_weights,
        ), spec.storage_options)
        return {"published": True, "num_frames": num_frames, "num_persons": int(counts.sum()), "errors": errors,
                "seconds": seconds}


def publish_video(batch: dict[str, np.ndarray], spec: PublishSpec) -> dict[str, np.ndarray]:
    """``map_groups`` function form of ``TrackAndPublish`` (the pipeline runs it as a task)."""
    return TrackAndPublish(spec)(batch)
