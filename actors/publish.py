"""The pipeline's last two stages: stage each frame row, then per video track and publish it atomically.

``stage_rows`` (a ``map_batches`` task after pose NMS) writes the rows to ``pipelines.staging`` and returns small
references. ``TrackAndPublish`` (``groupby("video_id").map_groups(publish_video, ...)`` over those references)
reads one video's staged shards **one shard at a time, in frame order**, filters the ORB correspondences to what the
tracker reads, runs PoseFlow, and streams the keypoint and frames tables into ``AtomicParquetWriter``s, so memory is
the tracker's window plus one shard however long the video (``pipelines.staging`` says why this shape). Publishing
follows ``pipelines.publish``: keypoint table, frames table, then the commit marker. A video whose frames could not
be read at all is not published (no marker), so a rerun tries it again; a video with some bad frames is published
with those frames' ``status`` in the frames table and the errors in the summary.

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
from models.correspondences import filter_for_tracking, filter_is_exact
from models.poseflow import PoseFlowParams, PoseFlowTracker
from pipelines.decode import CORR_PAIRS
from pipelines.publish import AtomicParquetWriter, Manifest, join_uri, read_manifest, write_manifest
from pipelines.schema import FRAMES_SCHEMA, KEYPOINT_SCHEMA, frames_table, keypoint_table, table_metadata
from pipelines.staging import read_staged, remove_staging, write_staged

logger = logging.getLogger(__name__)

__all__ = ["PublishSpec", "stage_rows", "TrackAndPublish", "publish_video"]

_TIME_COLUMNS = ("t_decode", "t_orb", "t_detect", "t_sppe", "t_pose_nms")
_REF_COLUMNS = ("video_id", "unit_uri", "shard_index", "staged_uri", "num_rows")
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


def stage_rows(batch: dict[str, np.ndarray], spec: PublishSpec) -> dict[str, np.ndarray]:
    """``map_batches`` task: write a batch of frame rows to the staging area; one reference row per file written."""
    refs = write_staged(batch, spec.output, spec.run_id, spec.storage_options)
    return {c: np.array([r[c] for r in refs], dtype=object if c in ("video_id", "unit_uri", "staged_uri")
                        else np.int64) for c in _REF_COLUMNS}


def _tracking_pairs(kind: int, pairs: np.ndarray, frame_index: int, prev: tuple[int, np.ndarray] | None,
                    kp: np.ndarray, size: tuple[int, int], params: PoseFlowParams) -> np.ndarray | None:
    """The correspondences to hand ``PoseFlowTracker.update`` for this frame, or None (pose-only).

    The decode stage paired frame i with frame i − 1. The tracker needs pairs from the previous frame *with
    detections*; when that is not frame i − 1 (an empty or failed frame in between) no such pairs exist here and
    the frame is tracked with AlphaPose's identity fallback (AlphaPose would match across the gap instead).
    """
    if kind != CORR_PAIRS or prev is None or prev[0] != frame_index - 1:
        return None
    return filter_for_tracking(pairs, prev[1], kp, size, params) if filter_is_exact(params) else pairs


class _Frames:
    """Frame statuses streamed in frame order: frames never seen between two statuses are "missing"."""

    def __init__(self) -> None:
        self.next = 0
        self.missing = 0
        self.first_missing = -1
        self.index: list[int] = []
        self.ts: list[float] = []
        self.n: list[int] = []
        self.status: list[str] = []

    def add(self, f: int, ts: float, n: int, status: str) -> None:
        self.fill(f)
        self.index.append(f), self.ts.append(ts), self.n.append(n), self.status.append(status)
        self.next = f + 1

    def fill(self, upto: int) -> None:
        for g in range(self.next, upto):
            if self.first_missing < 0:
                self.first_missing = g
            self.missing += 1
            self.index.append(g), self.ts.append(float("nan")), self.n.append(0), self.status.append("missing")
        self.next = max(self.next, upto)

    def table(self, metadata: dict):
        t = frames_table(np.asarray(self.index, np.int64), np.asarray(self.ts, np.float64),
                         np.asarray(self.n, np.int64), self.status, metadata=metadata)
        self.index, self.ts, self.n, self.status = [], [], [], []
        return t


class TrackAndPublish:
    """``__init__`` keeps the run spec; ``__call__`` handles one video's staged references, returns its summary."""

    def __init__(self, spec: PublishSpec) -> None:
        self.spec = spec

    def __call__(self, refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        video_id = str(refs["video_id"][0])
        uri = str(refs["unit_uri"][0])
        try:
            summary = self._publish(video_id, uri, refs)
        except FileNotFoundError as e:
            summary = self._committed_before(video_id) or self._failed(video_id, uri, e)
        except Exception as e:  # a bad video becomes an error summary; the other videos go on
            summary = self._failed(video_id, uri, e)
        try:
            remove_staging(self.spec.output, video_id, self.spec.storage_options)
        except Exception:  # leftovers cost space, never correctness: staged files are only read by reference
            logger.warning("could not remove the staged rows of %s", video_id, exc_info=True)
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

    def _committed_before(self, video_id: str) -> dict | None:
        """The summary of a video this run already committed: Ray retried this task after an attempt that published
        and removed the staged rows, then died before returning. None when there is no such commit."""
        m = read_manifest(self.spec.output, video_id, self.spec.storage_options)
        if m is None or m.run_id != self.spec.run_id or m.config_hash != self.spec.config_hash:
            return None
        logger.warning("%s was committed by an earlier attempt of this task; reporting that commit", video_id)
        errors = [] if m.num_errors == 0 else [_error(
            video_id, m.source_uri, -1, -1, "publish", f"committed by an earlier attempt of this task, which recorded "
            f"{m.num_errors} error(s); the frames table keeps each bad frame's status")]
        return {"published": True, "num_frames": m.num_frames, "num_persons": m.num_persons, "errors": errors,
                "seconds": {}}

    @staticmethod
    def _failed(video_id: str, uri: str, e: Exception) -> dict:
        logger.error("publishing %s failed", video_id, exc_info=e)
        return {
            "published": False, "num_frames": 0, "num_persons": 0,
            "errors": [_error(video_id, uri, -1, -1, "publish", f"{type(e).__name__}: {e}")], "seconds": {},
        }

    def _publish(self, video_id: str, uri: str, refs: dict[str, np.ndarray]) -> dict:
        spec = self.spec
        t0 = time.perf_counter()
        by_shard: dict[int, list[str]] = {}
        for s, u in zip(refs["shard_index"], refs["staged_uri"]):
            by_shard.setdefault(int(s), []).append(str(u))
        md = table_metadata(random_weights=spec.random_weights, config=spec.config,
                            extra={"run_id": spec.run_id, "config_hash": spec.config_hash, "video_id": video_id})
        part = f"video_id={video_id}/part-0.parquet"
        files = (f"poses/{part}", f"frames/{part}")
        tracker = PoseFlowTracker(spec.tracking) if spec.tracking is not None else None
        frames = _Frames()
        errors: list[dict] = []
        seconds = {c[2:]: 0.0 for c in _TIME_COLUMNS}
        num_frames = num_good = num_persons = 0
        prev: tuple[int, np.ndarray] | None = None  # (frame index, poses) of the last frame with detections
        with AtomicParquetWriter(join_uri(spec.output, files[0]), KEYPOINT_SCHEMA.with_metadata(md),
                                 spec.storage_options) as poses_out, \
                AtomicParquetWriter(join_uri(spec.output, files[1]), FRAMES_SCHEMA.with_metadata(md),
                                    spec.storage_options) as frames_out:
            for shard in sorted(by_shard):  # shards cover increasing frame ranges: this is frame order
                batch = read_staged(by_shard[shard], spec.storage_options)
                num_frames = max(num_frames, int(np.max(batch["num_frames"])))
                good = self._frame_rows(video_id, batch, frames, errors)
                if frames.index:
                    frames_out.write(frames.table(md))
                if not good:
                    continue
                if spec.random_weights is False and any(str(batch["detector_weights"][r]) == "random" for r in good):
                    raise ValueError("rows come from a random-weight detector but the run is not marked random")
                ids, prev = self._track(tracker, batch, good, prev)
                table, n_persons = self._keypoints(batch, good, ids, md)
                poses_out.write(table)
                num_good += len(good)
                num_persons += n_persons
                for c in _TIME_COLUMNS:
                    if c in batch:
                        seconds[c[2:]] += float(np.sum(np.asarray(batch[c], np.float64)[good]))
            if num_good == 0:
                if not errors:
                    errors.append(_error(video_id, uri, -1, -1, "decode", "no frames decoded"))
                return {"published": False, "num_frames": 0, "num_persons": 0, "errors": errors, "seconds": {}}
            frames.fill(num_frames)
            if frames.missing:
                errors.append(_error(video_id, uri, -1, frames.first_missing, "decode",
                                     f"{frames.missing} of {num_frames} frames not decoded "
                                     f"(first missing: {frames.first_missing})"))
            if frames.index:
                frames_out.write(frames.table(md))
            poses_out.commit()
            frames_out.commit()
        seconds["track_and_publish"] = time.perf_counter() - t0
        write_manifest(spec.output, Manifest(
            video_id=video_id, source_uri=uri, fingerprint=spec.fingerprints.get(video_id, ""),
            config_hash=spec.config_hash, run_id=spec.run_id, num_frames=num_frames, num_persons=num_persons,
            num_errors=len(errors), files=files, random_weights=spec.random_weights,
        ), spec.storage_options)
        return {"published": True, "num_frames": num_frames, "num_persons": num_persons, "errors": errors,
                "seconds": seconds}

    @staticmethod
    def _frame_rows(video_id: str, batch: dict, frames: _Frames, errors: list[dict]) -> list[int]:
        """Rows of one shard's good results in frame order (one per frame); statuses and errors recorded."""
        frame_index = np.asarray(batch["frame_index"], np.int64)
        err = [str(e) for e in batch["error"]]
        status: dict[int, str] = {}
        rows: dict[int, int] = {}
        for r in np.argsort(frame_index, kind="stable"):
            f = int(frame_index[r])
            if err[r]:
                stage = str(batch["stage"][r]) or "unknown"
                errors.append(_error(video_id, str(batch["source_uri"][r]), int(batch["shard_index"][r]), f, stage,
                                     err[r]))
                if f >= 0 and f not in rows:
                    status[f] = _FRAME_STATUS.get(stage, "pose_error")
            elif f not in rows:  # a retried task may deliver a frame twice: keep one copy
                rows[f] = int(r)
                status[f] = "ok"
        for f in sorted(status):
            r = rows.get(f)
            frames.add(f, float(batch["timestamp_s"][r]) if r is not None else float("nan"),
                       int(batch["n_persons"][r]) if r is not None else 0, status[f])
        return [rows[f] for f in sorted(rows)]

    def _track(self, tracker, batch, good: list[int], prev) -> tuple[np.ndarray | None, tuple | None]:
        """PoseFlow over one shard's frames in order (the tracker carries its window across shards)."""
        if tracker is None:
            return None, prev
        kps, k_scores, p_scores = (rows_of(batch[c]) for c in ("keypoints", "keypoint_scores", "pose_scores"))
        ids = []
        for r in good:
            size = (int(batch["image_width"][r]), int(batch["image_height"][r]))
            kp = np.asarray(kps[r], np.float64)
            f = int(batch["frame_index"][r])
            pairs = _tracking_pairs(int(batch["correspondence_kind"][r]), np.asarray(batch["correspondences"][r]), f,
                                    prev, kp, size, tracker.params) if len(kp) else None
            ids.append(tracker.update(kp, np.asarray(k_scores[r], np.float64), np.asarray(p_scores[r], np.float64),
                                      image_size=size, correspondences=pairs))
            if len(kp):
                prev = (f, kp)
        return np.concatenate(ids), prev

    def _keypoints(self, batch, good: list[int], track_ids, md: dict):
        spec = self.spec
        kps, k_scores, boxes, b_scores, p_scores = (
            rows_of(batch[c]) for c in ("keypoints", "keypoint_scores", "boxes_xyxy", "box_scores", "pose_scores"))
        counts = np.array([len(kps[r]) for r in good], np.int64)
        rep = np.repeat(np.asarray(good, np.int64), counts)
        k = next((kps[r].shape[1] for r in good if kps[r].ndim == 3), 0)

        def cat(arrs, shape, dtype=np.float32):
            parts = [np.asarray(arrs[r], dtype).reshape(-1, *shape) for r in good]
            return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

        table = keypoint_table(
            source_uri=np.asarray(batch["source_uri"], dtype=object)[rep],
            frame_index=np.asarray(batch["frame_index"], np.int64)[rep],
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
            detector=str(batch["detector"][good[0]]),
            detector_sha256=str(batch["detector_weights"][good[0]]),
            sppe=spec.sppe,
            sppe_sha256=spec.sppe_sha256,
            metadata=md,
        )
        return table, int(counts.sum())


def publish_video(refs: dict[str, np.ndarray], spec: PublishSpec) -> dict[str, np.ndarray]:
    """``map_groups`` function form of ``TrackAndPublish`` (the pipeline runs it as a task)."""
    return TrackAndPublish(spec)(refs)
