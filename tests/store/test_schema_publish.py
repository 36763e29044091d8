"""The output schema round-trips through Parquet, and publishing is atomic with readable commit markers."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from store.manifest import Manifest, read_manifests, write_manifest
from store.schema import FRAMES_SCHEMA, KEYPOINT_SCHEMA, frames_table, keypoint_table, table_metadata
from store.writers import put_atomic, write_table_atomic


def _table(p=3, k=17, tracked=True):
    rng = np.random.default_rng(0)
    return keypoint_table(
        source_uri="s3://b/v.mp4",
        frame_index=np.arange(p),
        timestamp_s=np.array([0.0, np.nan, 0.2][:p]),
        image_width=np.full(p, 640),
        image_height=np.full(p, 360),
        person_index=np.zeros(p),
        track_id=np.array([1, 0, 2][:p]) if tracked else None,
        box_xyxy=rng.random((p, 4)),
        box_score=rng.random(p),
        keypoints=rng.random((p, k, 2)) * 100,
        keypoint_scores=rng.random((p, k)),
        pose_score=rng.random(p),
        keypoint_set="coco17",
        detector="det",
        detector_sha256="random",
        sppe="fastpose_res50",
        sppe_sha256="random",
        metadata=table_metadata(random_weights=True, config={"a": 1}),
    )


def test_keypoint_table_round_trip():
    t = _table()
    buf = io.BytesIO()
    pq.write_table(t, buf)
    back = pq.read_table(io.BytesIO(buf.getvalue()))
    assert back.schema.equals(KEYPOINT_SCHEMA)  # schema first
    assert back.equals(t)  # then data
    md = back.schema.metadata
    assert md[b"raypose.schema_version"] == b"1" and md[b"raypose.random_weights"] == b"true"
    row = back.slice(1, 1).to_pylist()[0]
    assert row["track_id"] is None and row["timestamp_s"] is None  # 0 → untracked, NaN → null
    assert len(row["keypoints"]) == 17 and len(row["keypoints"][0]) == 2
    assert _table(tracked=False).column("track_id").null_count == 3


def test_empty_table_keeps_schema():
    t = keypoint_table(
        source_uri="v",
        frame_index=np.zeros(0),
        timestamp_s=np.zeros(0),
        image_width=np.zeros(0),
        image_height=np.zeros(0),
        person_index=np.zeros(0),
        track_id=None,
        box_xyxy=np.zeros((0, 4)),
        box_score=np.zeros(0),
        keypoints=np.zeros((0, 17, 2)),
        keypoint_scores=np.zeros((0, 17)),
        pose_score=np.zeros(0),
        keypoint_set="coco17",
        detector="d",
        detector_sha256="x",
        sppe="s",
        sppe_sha256="y",
    )
    assert t.num_rows == 0 and t.schema.equals(KEYPOINT_SCHEMA)


def test_frames_table_statuses():
    t = frames_table(np.arange(3), np.array([0, 0.1, np.nan]), np.array([2, 0, 0]), ["ok", "ok", "decode_error"])
    assert t.schema.equals(FRAMES_SCHEMA) and t.column("timestamp_s").null_count == 1
    with pytest.raises(ValueError, match="unknown frame status"):
        frames_table(np.arange(1), np.zeros(1), np.zeros(1), ["great"])


def test_publish_is_atomic_and_markers_round_trip(tmp_path):
    uri = str(tmp_path / "out" / "poses" / "video_id=v" / "part-0.parquet")
    n = write_table_atomic(_table(), uri)
    assert os.path.getsize(uri) == n and pq.read_table(uri).num_rows == 3
    assert not [f for f in os.listdir(os.path.dirname(uri)) if ".tmp-" in f]

    # a failing write leaves the previous content and no temp file
    with pytest.raises(TypeError):
        put_atomic(object(), uri)  # type: ignore[arg-type]
    assert pq.read_table(uri).num_rows == 3
    assert not [f for f in os.listdir(os.path.dirname(uri)) if ".tmp-" in f]

    out = str(tmp_path / "out")
    assert read_manifests(out) == {}
    m = Manifest(
        video_id="v",
        source_uri="/x/v.mp4",
        fingerprint="f",
        config_hash="c",
        run_id="r",
        num_frames=10,
        num_persons=3,
        num_errors=0,
        files=("poses/video_id=v/part-0.parquet",),
        random_weights=True,
    )
    write_manifest(out, m)
    (tmp_path / "out" / "_manifest" / "junk.json").write_text("{not json")
    assert read_manifests(out) == {"v": m}
    # pyarrow reads the folder as a hive-partitioned dataset with video_id restored
    ds = pq.read_table(str(tmp_path / "out" / "poses"), partitioning="hive")
    assert ds.column("video_id").to_pylist() == ["v"] * 3
