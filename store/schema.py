"""The output tables, defined once: the keypoint table (one row per kept person per frame) and the frames table.

Every writer builds its tables through ``keypoint_table`` / ``frames_table`` so a column cannot drift. Published
layout per video (hive-partitioned by ``video_id``, readable by pandas, pyarrow and DuckDB)::

    <output>/poses/video_id=<id>/part-0.parquet     keypoint table
    <output>/frames/video_id=<id>/part-0.parquet    frames table (every frame, persons or not)
    <output>/_manifest/<id>.json                    commit marker

Inside a partition file the ``video_id`` column is not stored (the directory carries it, as hive partitioning
expects); reading the folder as a dataset restores it. File metadata carries ``raypose.schema_version``,
``raypose.random_weights`` and the effective config.

Also defined here, because the stage that writes them (decode) and the stage that reads them (per-video tracking)
must agree: the values of the frame rows' ``correspondence_kind`` column (``CORR_NONE``, ``CORR_PAIRS``,
``CORR_IDENTITY``).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

__all__ = [
    "SCHEMA_VERSION",
    "KEYPOINT_SCHEMA",
    "FRAMES_SCHEMA",
    "FRAME_STATUSES",
    "keypoint_table",
    "frames_table",
    "table_metadata",
    "CORR_NONE",
    "CORR_PAIRS",
    "CORR_IDENTITY",
]

SCHEMA_VERSION = "1"

#: Values of the frame rows' ``correspondence_kind`` column (set by the decode stage, read by tracking):
#: ``CORR_NONE``: no pairs (a unit's first frame, or correspondences off); ``CORR_PAIRS``: the row's
#: ``correspondences`` hold ORB point pairs (frame i − 1 → frame i); ``CORR_IDENTITY``: too few matches, so
#: PoseFlow's identity fallback applies (AlphaPose ``trackers/PoseFlow/matching.py`` writes one row per pixel
#: for it; here it is this flag, never rows).
CORR_NONE, CORR_PAIRS, CORR_IDENTITY = 0, 1, 2

#: ``status`` values of the frames table.
FRAME_STATUSES = ("ok", "decode_error", "missing", "detect_error", "pose_error")

KEYPOINT_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("timestamp_s", pa.float64()),  # null for image units (they have no clock)
        pa.field("image_width", pa.int32(), nullable=False),
        pa.field("image_height", pa.int32(), nullable=False),
        # Clockwise degrees (0/90/180/270) the stored video frames were turned to be displayed (their display
        # matrix; pipelines.decode): keypoints and boxes are in displayed pixels, image_width × image_height. Null:
        # not recorded (files from before this column).
        pa.field("rotation", pa.int16()),
        pa.field("person_index", pa.int32(), nullable=False),  # order within the frame (pose-NMS pick order)
        pa.field("track_id", pa.int64()),  # null until tracked; ≥ 1 when tracked
        pa.field("box_xyxy", pa.list_(pa.float32(), 4), nullable=False),  # detector box, image pixels
        pa.field("box_score", pa.float32(), nullable=False),
        pa.field("keypoints", pa.list_(pa.list_(pa.float32(), 2)), nullable=False),  # K × (x, y) image pixels
        pa.field("keypoint_scores", pa.list_(pa.float32()), nullable=False),  # K raw heatmap maxima (merged)
        pa.field("pose_score", pa.float32(), nullable=False),  # mean + box score + 1.25·max (AlphaPose)
        pa.field("keypoint_set", pa.string(), nullable=False),  # models.keypoints name, e.g. "coco17"
        pa.field("detector", pa.string(), nullable=False),
        pa.field("detector_sha256", pa.string(), nullable=False),  # or "random"
        pa.field("sppe", pa.string(), nullable=False),
        pa.field("sppe_sha256", pa.string(), nullable=False),  # or "random"
    ]
)

FRAMES_SCHEMA = pa.schema(
    [
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("timestamp_s", pa.float64()),
        pa.field("n_persons", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
    ]
)


def table_metadata(*, random_weights: bool, config: dict | None = None, extra: dict | None = None) -> dict:
    """Parquet key-value metadata: schema version, whether weights were random, the effective config."""
    md = {
        "raypose.schema_version": SCHEMA_VERSION,
        "raypose.random_weights": "true" if random_weights else "false",
    }
    if config is not None:
        md["raypose.config"] = json.dumps(config, sort_keys=True, default=str)
    for k, v in (extra or {}).items():
        md[f"raypose.{k}"] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return md


def keypoint_table(
    *,
    source_uri: str | np.ndarray,
    frame_index: np.ndarray,
    timestamp_s: np.ndarray,
    image_width: np.ndarray,
    image_height: np.ndarray,
    person_index: np.ndarray,
    track_id: np.ndarray | None,
    box_xyxy: np.ndarray,
    box_score: np.ndarray,
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray,
    pose_score: np.ndarray,
    keypoint_set: str,
    detector: str,
    detector_sha256: str,
    sppe: str,
    sppe_sha256: str,
    metadata: dict | None = None,
    rotation: np.ndarray | None = None,
) -> pa.Table:
    """Build a keypoint table from per-person arrays (length P; ``source_uri`` one string or one per person):
        ``keypoints`` float ``[P, K, 2]``,
    ``keypoint_scores`` ``[P, K]``, ``box_xyxy`` ``[P, 4]``; ``track_id`` int (≤ 0 → null) or None; NaN
    timestamps become null; ``rotation`` int ``[P]`` clockwise degrees (the frame rows' column), None → null."""
    p = int(len(frame_index))
    kps = np.asarray(keypoints, np.float32)
    kps = kps if kps.ndim == 3 else kps.reshape(p, -1, 2)
    k = kps.shape[1]
    kp_col = pa.ListArray.from_arrays(
        np.arange(0, p * k + 1, k, dtype=np.int32),
        pa.FixedSizeListArray.from_arrays(pa.array(kps.reshape(-1), pa.float32()), 2),
    ).cast(KEYPOINT_SCHEMA.field("keypoints").type)
    sc_col = pa.ListArray.from_arrays(
        np.arange(0, p * k + 1, k, dtype=np.int32),
        pa.array(np.asarray(keypoint_scores, np.float32).reshape(-1), pa.float32()),
    )
    box_col = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(box_xyxy, np.float32).reshape(-1)), 4)
    ts = np.asarray(timestamp_s, np.float64)
    tid = None
    if track_id is not None:
        t = np.asarray(track_id, np.int64)
        tid = pa.array(t, pa.int64(), mask=t <= 0)
    cols = {
        "source_uri": pa.array([source_uri] * p if isinstance(source_uri, str) else list(source_uri), pa.string()),
        "frame_index": pa.array(np.asarray(frame_index, np.int64)),
        "timestamp_s": pa.array(ts, pa.float64(), mask=np.isnan(ts)),
        "image_width": pa.array(np.asarray(image_width, np.int32)),
        "image_height": pa.array(np.asarray(image_height, np.int32)),
        "rotation": pa.nulls(p, pa.int16()) if rotation is None else pa.array(np.asarray(rotation, np.int16)),
        "person_index": pa.array(np.asarray(person_index, np.int32)),
        "track_id": tid if tid is not None else pa.nulls(p, pa.int64()),
        "box_xyxy": box_col,
        "box_score": pa.array(np.asarray(box_score, np.float32)),
        "keypoints": kp_col,
        "keypoint_scores": sc_col,
        "pose_score": pa.array(np.asarray(pose_score, np.float32)),
        "keypoint_set": pa.array([keypoint_set] * p, pa.string()),
        "detector": pa.array([detector] * p, pa.string()),
        "detector_sha256": pa.array([detector_sha256] * p, pa.string()),
        "sppe": pa.array([sppe] * p, pa.string()),
        "sppe_sha256": pa.array([sppe_sha256] * p, pa.string()),
    }
    schema = KEYPOINT_SCHEMA.with_metadata(metadata or {})
    return pa.Table.from_arrays([cols[f.name] for f in KEYPOINT_SCHEMA], schema=schema)


def frames_table(
    frame_index: np.ndarray,
    timestamp_s: np.ndarray,
    n_persons: np.ndarray,
    status: list[str],
    metadata: dict | None = None,
) -> pa.Table:
    """Build the frames table; ``status`` values must be in ``FRAME_STATUSES``."""
    bad = set(status) - set(FRAME_STATUSES)
    if bad:
        raise ValueError(f"unknown frame status {sorted(bad)}; allowed: {FRAME_STATUSES}")
    ts = np.asarray(timestamp_s, np.float64)
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(frame_index, np.int64)),
            pa.array(ts, pa.float64(), mask=np.isnan(ts)),
            pa.array(np.asarray(n_persons, np.int32)),
            pa.array(list(status), pa.string()),
        ],
        schema=FRAMES_SCHEMA.with_metadata(metadata or {}),
    )
