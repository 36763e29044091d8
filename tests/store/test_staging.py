"""Staged pose rows round-trip exactly; streamed tables publish atomically or not at all (local and S3)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.common import ragged
from store.staging import decode_rows, encode_rows, read_staged, remove_staging, write_staged
from store.writers import AtomicParquetWriter


def _batch(videos=("a", "a", "b", "a"), shards=(0, 1, 0, 0)) -> dict[str, np.ndarray]:
    n = len(videos)
    rng = np.random.default_rng(0)
    return {
        "video_id": np.array(videos, dtype=object),
        "unit_uri": np.array([f"/in/{v}.mp4" for v in videos], dtype=object),
        "shard_index": np.array(shards, np.int64),
        "frame_index": np.arange(n, dtype=np.int64) * 3,
        "timestamp_s": np.array([0.5, np.nan, 1.5, 2.0][:n]),
        "error": np.array(["", "ValueError: bad", "", ""][:n], dtype=object),
        "random_weights": np.array([True, False, True, True][:n]),
        "correspondence_kind": np.array([0, 1, 2, 1][:n], np.int8),
        # per-row arrays with different first dimensions (Ray's variable-shaped column) ...
        "keypoints": ragged([rng.random((i, 17, 2), dtype=np.float32) for i in range(n)]),
        "correspondences": ragged([rng.integers(-5, 900, (3 * i, 4)).astype(np.int16) for i in range(n)]),
        # ... and a column Ray stacked because every row had the same shape
        "box_scores": np.zeros((n, 0), np.float32),
    }


def _assert_same(a: dict, b: dict, rows) -> None:
    assert list(a) == list(b)
    for name in a:
        want = [a[name][i] for i in rows]
        got = list(b[name])
        for w, g in zip(want, got, strict=True):
            w, g = np.asarray(w), np.asarray(g)
            assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, w.dtype, g.shape, w.shape)
            np.testing.assert_array_equal(g, w)


def test_encode_decode_is_lossless():
    batch = _batch()
    table = encode_rows(batch)
    assert table.num_rows == 4 and "keypoints.shape" in table.column_names
    _assert_same(batch, decode_rows(table), range(4))
    _assert_same(batch, decode_rows(encode_rows(batch, np.array([3, 1]))), [3, 1])


def test_write_staged_one_file_per_video_shard_and_read_back(tmp_path):
    batch = _batch()
    refs = write_staged(batch, str(tmp_path), "run1")
    assert [(r["video_id"], r["shard_index"], r["num_rows"]) for r in refs] == [("a", 0, 2), ("a", 1, 1), ("b", 0, 1)]
    assert all(
        r["staged_uri"].startswith(f"{tmp_path}/_staging/{r['video_id']}/run1/s{r['shard_index']:06d}-") for r in refs
    )
    _assert_same(batch, read_staged([refs[0]["staged_uri"]]), [0, 3])
    _assert_same(batch, read_staged([refs[0]["staged_uri"], refs[1]["staged_uri"]]), [0, 3, 1])
    remove_staging(str(tmp_path), "a")
    assert sorted(os.listdir(tmp_path / "_staging")) == ["b"]
    remove_staging(str(tmp_path), "a")  # already gone: no error


def _table(n: int) -> pa.Table:
    return pa.table({"x": np.arange(n, dtype=np.int64)})


def test_streamed_writer_publishes_only_on_commit(tmp_path):
    target = tmp_path / "out" / "t.parquet"
    with AtomicParquetWriter(str(target), _table(0).schema) as w:
        w.write(_table(3))
        assert not target.exists()  # nothing visible before the commit
        w.write(_table(2))
        w.commit()
    assert pq.read_table(target)["x"].to_pylist() == [0, 1, 2, 0, 1]
    assert pq.ParquetFile(target).num_row_groups == 2  # one row group per write: memory stays one piece
    with pytest.raises(RuntimeError):
        with AtomicParquetWriter(str(target), _table(0).schema) as w:
            w.write(_table(7))
            raise RuntimeError("crash mid-video")
    with AtomicParquetWriter(str(target), _table(0).schema) as w:
        w.write(_table(9))  # left without commit: abandoned
    assert pq.read_table(target).num_rows == 5  # the committed file is untouched
    assert os.listdir(target.parent) == ["t.parquet"]  # and no temp file is left behind


@pytest.mark.s3
def test_streamed_writer_and_staging_on_s3(s3_server):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("bucket")
    with AtomicParquetWriter("s3://bucket/out/t.parquet", _table(0).schema) as w:
        w.write(_table(4))
        assert not fs.exists("bucket/out/t.parquet")
        w.commit()
    with fs.open("bucket/out/t.parquet", "rb") as f:
        assert pq.read_table(f).num_rows == 4
    batch = _batch()
    refs = write_staged(batch, "s3://bucket/out", "run1")
    _assert_same(batch, read_staged([refs[2]["staged_uri"]]), [2])
    remove_staging("s3://bucket/out", "b")
    fs.invalidate_cache()
    assert not fs.exists("bucket/out/_staging/b")
