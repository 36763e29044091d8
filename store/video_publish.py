"""Publish one video from its staged rows: tracked keypoint table, frames table, then the commit marker.

The per-video stage (``actors.publish.TrackAndPublish``) hands ``publish_staged_video`` one video's staged files.
They are read (``store.staging``) **one shard at a time, in frame order**, tracked (``models.video_tracking``:
PoseFlow, whose window carries over from shard to shard), and streamed into two ``store.writers.AtomicParquetWriter``
(keypoint and frames tables, ``store.schema``), so memory is the tracker's window plus one shard however long the
video. Publishing follows ``store.manifest``: an earlier marker of the video is deleted, then the keypoint table,
the frames table and the commit marker are published; when one of them fails (a full disk), the tables this attempt
published are deleted again, so a video is either committed whole or not committed (and none of this attempt's
tables is left visible). A video whose
frames could not be read at all is not published (no marker), so a rerun tries it again; a video with some bad
frames is published with those frames' ``status`` in the frames table and the errors in its summary.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa

from models.poseflow import PoseFlowParams, PoseFlowTracker
from models.video_tracking import FrameLedger, VideoTracker
from store.manifest import Manifest, read_manifest, write_manifest
from store.schema import CORR_PAIRS, FRAMES_SCHEMA, KEYPOINT_SCHEMA, frames_table, keypoint_table, table_metadata
from store.staging import read_staged
from store.writers import AtomicParquetWriter, join_uri

logger = logging.getLogger(__name__)

__all__ = [
    "INPUT",
    "INFRASTRUCTURE",
    "TIME_COLUMNS",
    "VideoSummary",
    "error_kind",
    "error_record",
    "publish_staged_video",
    "committed_summary",
    "failed_summary",
]

#: Per-frame stage timings (seconds) of the frame rows, summed per video into ``VideoSummary.seconds``.
TIME_COLUMNS = ("t_decode", "t_orb", "t_detect", "t_sppe", "t_pose_nms")


@dataclass(frozen=True)
class VideoSummary:
    """What publishing one video did."""

    published: bool  # the commit marker was written
    num_frames: int
    num_persons: int
    errors: list[dict] = field(default_factory=list)  # error_record dicts, in the order they were met
    seconds: dict[str, float] = field(default_factory=dict)  # stage → seconds (TIME_COLUMNS without "t_", and
    # "track_and_publish"); empty when not published


#: Error kinds: the input's fault (corrupt media, undecodable frames, failed probes: a rerun gives the same error), or
#: the infrastructure's (output or staging I/O, memory, workers, the cluster: a rerun may succeed).
INPUT, INFRASTRUCTURE = "input", "infrastructure"

#: Packages whose exceptions are storage or cluster failures (object-store clients).
_INFRASTRUCTURE_PACKAGES = ("botocore", "aiobotocore", "s3fs", "gcsfs", "adlfs", "urllib3", "aiohttp")


def error_kind(exc: BaseException) -> str:
    """``INFRASTRUCTURE`` when ``exc`` (or an exception it was raised from) is an I/O error (``OSError``: disk full,
    permissions, network, timeouts), ``MemoryError``, or an object-store client's error; else ``INPUT``.

    For errors raised while publishing: that stage reads only staged rows and writes only outputs, so its I/O errors
    are never the input's fault.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (OSError, MemoryError)) or type(e).__module__.split(".")[0] in _INFRASTRUCTURE_PACKAGES:
            return INFRASTRUCTURE
        e = e.__cause__ or e.__context__
    return INPUT


def error_record(video_id: str, uri: str, shard: int, frame: int, stage: str, message: str, kind: str = INPUT) -> dict:
    """One error of a video's summary (``shard``/``frame`` −1 when the error concerns no single one); ``kind`` is
    ``INPUT`` or ``INFRASTRUCTURE``."""
    if kind not in (INPUT, INFRASTRUCTURE):
        raise ValueError(f"error kind must be {INPUT!r} or {INFRASTRUCTURE!r}, got {kind!r}")
    return {
        "video_id": video_id,
        "source_uri": uri,
        "shard_index": int(shard),
        "frame_index": int(frame),
        "stage": stage,
        "message": message,
        "kind": kind,
    }


def failed_summary(video_id: str, uri: str, exc: BaseException) -> VideoSummary:
    """The summary of a video whose publishing raised ``exc`` (nothing committed); the error's kind is
    ``error_kind(exc)``."""
    return VideoSummary(
        published=False,
        num_frames=0,
        num_persons=0,
        errors=[error_record(video_id, uri, -1, -1, "publish", f"{type(exc).__name__}: {exc}", error_kind(exc))],
    )


def committed_summary(
    output: str, video_id: str, run_id: str, config_hash: str, storage_options: dict | None = None
) -> VideoSummary | None:
    """The summary of a video that this run (``run_id``, ``config_hash``) already committed, from its marker; None
    when there is no such commit.

    For a retried per-video task: Ray re-runs a task whose worker died, so an attempt may have published and removed
    the staged rows, then died before returning; the retry finds no staged files.
    """
    m = read_manifest(output, video_id, storage_options)
    if m is None or m.run_id != run_id or m.config_hash != config_hash:
        return None
    logger.warning("%s was committed by an earlier attempt of this task; reporting that commit", video_id)
    errors = (
        []
        if m.num_errors == 0
        else [
            error_record(
                video_id,
                m.source_uri,
                -1,
                -1,
                "publish",
                f"committed by an earlier attempt of this task, which recorded "
                f"{m.num_errors} error(s); the frames table keeps each bad frame's status",
            )
        ]
    )
    return VideoSummary(published=True, num_frames=m.num_frames, num_persons=m.num_persons, errors=errors)


def publish_staged_video(
    video_id: str,
    source_uri: str,
    staged: dict[int, list[str]],
    *,
    output: str,
    run_id: str,
    config_hash: str,
    fingerprint: str,
    keypoint_set: str,
    sppe: str,
    sppe_sha256: str,
    random_weights: bool,
    config: dict | None = None,
    tracking: PoseFlowParams | None = None,
    storage_options: dict | None = None,
) -> VideoSummary:
    """Track and publish one video from its staged frame rows.

    Args:
        video_id: the video (output partition key); source_uri: its unit's URI (video file or image folder).
        staged: shard index → the staged file URIs of that shard (``store.staging.write_staged`` references).
        output: the output folder (local path or fsspec URI); run_id, config_hash, fingerprint: recorded in the
            commit marker (and the first two in the tables' metadata).
        keypoint_set, sppe, sppe_sha256: the pose columns' provenance; random_weights: the run used random weights
            (rows from a random-weight detector are refused otherwise).
        config: the effective config, stored in the tables' metadata.
        tracking: PoseFlow parameters, or None to leave ``track_id`` null.
        storage_options: fsspec options.

    Returns:
        The video's summary. Raises whatever reading or writing raises (``FileNotFoundError`` when the staged files
        are gone); nothing is committed then.
    """
    t0 = time.perf_counter()
    md = table_metadata(
        random_weights=random_weights,
        config=config,
        extra={"run_id": run_id, "config_hash": config_hash, "video_id": video_id},
    )
    part = f"video_id={video_id}/part-0.parquet"
    files = (f"poses/{part}", f"frames/{part}")
    tracker = VideoTracker(PoseFlowTracker(tracking)) if tracking is not None else None
    ledger = FrameLedger()
    errors: list[dict] = []
    seconds = {c[2:]: 0.0 for c in TIME_COLUMNS}
    num_frames = num_good = num_persons = 0
    with (
        AtomicParquetWriter(
            join_uri(output, files[0]), KEYPOINT_SCHEMA.with_metadata(md), storage_options
        ) as poses_out,
        AtomicParquetWriter(join_uri(output, files[1]), FRAMES_SCHEMA.with_metadata(md), storage_options) as frames_out,
    ):
        for shard in sorted(staged):  # shards cover increasing frame ranges: this is frame order
            batch = read_staged(staged[shard], storage_options)
            num_frames = max(num_frames, int(np.max(batch["num_frames"])))
            good, bad = ledger.add_shard(
                batch["frame_index"], batch["error"], batch["stage"], batch["timestamp_s"], batch["n_persons"]
            )
            errors += [
                error_record(
                    video_id,
                    str(batch["source_uri"][r]),
                    int(batch["shard_index"][r]),
                    int(batch["frame_index"][r]),
                    str(batch["stage"][r]) or "unknown",
                    str(batch["error"][r]),
                )
                for r in bad
            ]
            if len(ledger):
                frames_out.write(frames_table(*ledger.pop(), metadata=md))
            if not good:
                continue
            if random_weights is False and any(str(batch["detector_weights"][r]) == "random" for r in good):
                raise ValueError("rows come from a random-weight detector but the run is not marked random")
            ids = _track(tracker, batch, good) if tracker is not None else None
            table, n_persons = _keypoint_table(batch, good, ids, md, keypoint_set, sppe, sppe_sha256)
            poses_out.write(table)
            num_good += len(good)
            num_persons += n_persons
            for c in TIME_COLUMNS:
                if c in batch:
                    seconds[c[2:]] += float(np.sum(np.asarray(batch[c], np.float64)[good]))
        if num_good == 0:
            if not errors:
                errors.append(error_record(video_id, source_uri, -1, -1, "decode", "no frames decoded"))
            return VideoSummary(published=False, num_frames=0, num_persons=0, errors=errors)
        ledger.fill(num_frames)
        if ledger.missing:
            errors.append(
                error_record(
                    video_id,
                    source_uri,
                    -1,
                    ledger.first_missing,
                    "decode",
                    f"{ledger.missing} of {num_frames} frames not decoded (first missing: {ledger.first_missing})",
                )
            )
        if len(ledger):
            frames_out.write(frames_table(*ledger.pop(), metadata=md))
        # An earlier run's marker stops describing the tables as soon as one is replaced: un-commit first, so a
        # failure below leaves the video uncommitted (a rerun processes it again), never a marker over mixed tables.
        remove_files(output, [f"_manifest/{video_id}.json"], storage_options, strict=True)
        committed: list[str] = []
        try:
            for name, out in zip(files, (poses_out, frames_out)):
                out.commit()
                committed.append(name)
            write_manifest(
                output,
                Manifest(
                    video_id=video_id,
                    source_uri=source_uri,
                    fingerprint=fingerprint,
                    config_hash=config_hash,
                    run_id=run_id,
                    num_frames=num_frames,
                    num_persons=num_persons,
                    num_errors=len(errors),
                    files=files,
                    random_weights=random_weights,
                ),
                storage_options,
            )
        except BaseException:  # e.g. the disk filled up after the keypoint table: publish nothing of this video
            remove_files(output, committed, storage_options)
            raise
    seconds["track_and_publish"] = time.perf_counter() - t0
    return VideoSummary(published=True, num_frames=num_frames, num_persons=num_persons, errors=errors, seconds=seconds)


def remove_files(output: str, names: list[str], storage_options: dict | None = None, strict: bool = False) -> None:
    """Delete ``output``-relative files (a missing one is fine); another failure raises when ``strict``, else it is
    logged."""
    for name in names:
        fs, path = fsspec.core.url_to_fs(join_uri(output, name), **(storage_options or {}))
        try:
            fs.rm(path)
        except FileNotFoundError:
            pass
        except Exception:
            if strict:
                raise
            logger.warning("could not delete %s", join_uri(output, name), exc_info=True)


def _rows_of(column) -> list[np.ndarray]:
    """The per-row arrays of a staged column (``store.staging.decode_rows`` gives object arrays of arrays)."""
    if isinstance(column, np.ndarray) and column.dtype != object:
        return list(column)
    return [np.asarray(x) for x in column]


def _track(tracker: VideoTracker, batch: dict[str, np.ndarray], good: list[int]) -> np.ndarray:
    """Track ids of the ``good`` rows' persons (one shard's frames, in frame order), concatenated."""
    kps, k_scores, p_scores = (_rows_of(batch[c]) for c in ("keypoints", "keypoint_scores", "pose_scores"))
    return tracker.update_frames(
        frame_index=[int(batch["frame_index"][r]) for r in good],
        keypoints=[kps[r] for r in good],
        keypoint_scores=[k_scores[r] for r in good],
        pose_scores=[p_scores[r] for r in good],
        image_size=[(int(batch["image_width"][r]), int(batch["image_height"][r])) for r in good],
        # Only CORR_PAIRS rows carry pairs; the others track with the identity fallback.
        correspondences=[
            np.asarray(batch["correspondences"][r]) if int(batch["correspondence_kind"][r]) == CORR_PAIRS else None
            for r in good
        ],
    )


def _keypoint_table(
    batch: dict[str, np.ndarray],
    good: list[int],
    track_ids: np.ndarray | None,
    md: dict,
    keypoint_set: str,
    sppe: str,
    sppe_sha256: str,
) -> tuple[pa.Table, int]:
    """The keypoint table of the ``good`` rows' persons (frame order, pick order within a frame), and its length."""
    kps, k_scores, boxes, b_scores, p_scores = (
        _rows_of(batch[c]) for c in ("keypoints", "keypoint_scores", "boxes_xyxy", "box_scores", "pose_scores")
    )
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
        rotation=np.asarray(batch["rotation"])[rep] if "rotation" in batch else None,  # rows staged before the column
        person_index=np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0),
        track_id=track_ids,
        box_xyxy=cat(boxes, (4,)),
        box_score=cat(b_scores, ()),
        keypoints=cat(kps, (k, 2)),
        keypoint_scores=cat(k_scores, (k,)),
        pose_score=cat(p_scores, ()),
        keypoint_set=keypoint_set,
        detector=str(batch["detector"][good[0]]),
        detector_sha256=str(batch["detector_weights"][good[0]]),
        sppe=sppe,
        sppe_sha256=sppe_sha256,
        metadata=md,
    )
    return table, int(counts.sum())
