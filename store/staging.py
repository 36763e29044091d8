"""Staged pose rows: the hand-over between the GPU phase and the per-video tracking phase.

Why a staging area: PoseFlow must see a video's frames in order, and a ``groupby("video_id")`` over the pose rows
would hand one task a whole video at once (Ray Data's ``GroupedData.map_groups`` "requires that each group fits in
memory on a single node": https://docs.ray.io/en/latest/data/api/doc/ray.data.grouped_data.GroupedData.map_groups.html).
Memory would grow with the video (more so with ORB correspondences, tens of KB per frame) and the shuffle would move
all of it. Instead the last per-frame stage writes each batch's rows here, **one file per (video, shard) piece**,
and only tiny references (video, shard, file) reach the per-video stage (grouped in the driver,
``pipelines.label.publish_videos``). The per-video stage then reads one shard's
files at a time, in shard order, and streams them through the tracker and the table writers: it holds the
tracker's ``link_len`` window plus one shard, whatever the video's length. Tracking shard by shard with overlaps and
stitching would stream too but can change ids near shard boundaries; this way the result equals tracking the whole
video.

Layout: ``<output>/_staging/<video_id>/<run_id>/s<shard:06d>-<uuid>.parquet``. Files are written atomically and
never overwritten; a retried task writes new files, and the per-video stage reads exactly the files it was handed
(duplicated frames are dropped there). ``remove_staging`` deletes a video's staged rows once the video is
committed: this run's and the orphans of runs that hold no live lease on the output (``store.lease``), never those
of another live run.

Encoding: scalar columns as Arrow scalars; per-frame arrays (persons, correspondences) as a flat ``list`` column
plus a ``<name>.shape`` column, which restores each row's array exactly (dtype and shape) without Ray's tensor
extension types, so staged files are plain Parquet.
"""

from __future__ import annotations

import os
import uuid

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from store.lease import live_run_ids
from store.writers import join_uri, write_table_atomic

__all__ = ["STAGING_DIR", "encode_rows", "decode_rows", "write_staged", "read_staged", "remove_staging"]

STAGING_DIR = "_staging"
_SHAPE = ".shape"


def _is_ragged(column: np.ndarray) -> bool:
    column = np.asarray(column) if not isinstance(column, np.ndarray) else column
    if column.dtype == object:
        return len(column) > 0 and all(isinstance(x, np.ndarray) for x in column)
    return column.ndim > 1


def encode_rows(batch: dict[str, np.ndarray], rows: np.ndarray | None = None) -> pa.Table:
    """A Parquet-ready table of ``batch``'s rows (all, or the indices ``rows``), lossless for every column.

    Args:
        batch: a numpy batch as Ray Data hands it: 1-d scalar columns (numbers, bools, strings) and per-row arrays
            (an object array of arrays, or one stacked array when all rows have the same shape).
        rows: int indices of the rows to keep, in this order.
    """
    n = len(next(iter(batch.values())))
    take = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    names, arrays = [], []
    for name, column in batch.items():
        if _is_ragged(column):
            parts = [np.asarray(column[i]) for i in take]
            dtype = parts[0].dtype if parts else np.dtype(np.float32)
            ndim = parts[0].ndim if parts else 1
            flat = [p.reshape(-1) for p in parts]
            offsets = np.concatenate([[0], np.cumsum([len(f) for f in flat])]).astype(np.int64)
            values = np.concatenate(flat).astype(dtype) if flat else np.zeros(0, dtype)
            names += [name, name + _SHAPE]
            arrays += [
                pa.LargeListArray.from_arrays(offsets, pa.array(values)),
                pa.FixedSizeListArray.from_arrays(
                    pa.array(np.array([p.shape for p in parts], np.int64).reshape(-1)), ndim
                ),
            ]
        else:
            values = np.asarray(column)[take]
            arrays.append(pa.array(values.tolist() if values.dtype == object else values))
            names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def decode_rows(table: pa.Table) -> dict[str, np.ndarray]:
    """The batch ``encode_rows`` wrote: scalar columns as 1-d arrays, per-row arrays as object arrays."""
    out: dict[str, np.ndarray] = {}
    names = set(table.column_names)
    for name in table.column_names:
        if name.endswith(_SHAPE) and name[: -len(_SHAPE)] in names:
            continue
        column = table.column(name).combine_chunks()
        if name + _SHAPE in names:
            shapes = table.column(name + _SHAPE).combine_chunks()
            ndim = shapes.type.list_size
            shape_values = shapes.values.to_numpy(zero_copy_only=False).reshape(-1, ndim)
            values = column.values.to_numpy(zero_copy_only=False)
            offsets = column.offsets.to_numpy()
            rows = np.empty(len(column), dtype=object)
            for i in range(len(column)):
                rows[i] = values[offsets[i] : offsets[i + 1]].reshape(shape_values[i])
            out[name] = rows
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            out[name] = np.array(column.to_pylist(), dtype=object)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def write_staged(
    batch: dict[str, np.ndarray], output: str, run_id: str, storage_options: dict | None = None
) -> list[dict]:
    """Write ``batch``'s rows as one staged file per (video, shard) piece; returns one reference per file.

    References: ``video_id``, ``unit_uri``, ``shard_index``, ``staged_uri``, ``num_rows`` (plain values).
    """
    video = np.asarray(batch["video_id"], dtype=object)
    shard = np.asarray(batch["shard_index"], np.int64)
    refs = []
    for v, s in sorted({(str(v), int(s)) for v, s in zip(video, shard)}):
        rows = np.flatnonzero((video == v) & (shard == s))
        uri = join_uri(output, STAGING_DIR, v, run_id, f"s{s:06d}-{uuid.uuid4().hex}.parquet")
        write_table_atomic(encode_rows(batch, rows), uri, storage_options)
        refs.append(
            {
                "video_id": v,
                "unit_uri": str(batch["unit_uri"][rows[0]]),
                "shard_index": s,
                "staged_uri": uri,
                "num_rows": len(rows),
            }
        )
    return refs


def read_staged(uris: list[str], storage_options: dict | None = None) -> dict[str, np.ndarray]:
    """The rows of several staged files as one batch (``decode_rows`` of their concatenation)."""
    tables = []
    for uri in uris:
        with fsspec.open(uri, "rb", **(storage_options or {})) as f:
            tables.append(pq.read_table(f))
    return decode_rows(pa.concat_tables(tables, promote_options="permissive"))


def remove_staging(
    output: str, video_id: str, storage_options: dict | None = None, run_id: str | None = None
) -> list[str]:
    """Delete a video's staged files: this run's (``run_id``) and those of runs with no live lease on ``output``
    (crashed or finished runs, ``store.lease``), never a live run's. Called once the video is committed or given
    up. Returns the run ids whose folders were deleted."""
    fs, path = fsspec.core.url_to_fs(join_uri(output, STAGING_DIR, video_id), **(storage_options or {}))
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    names = {e.rstrip("/").rsplit("/", 1)[-1]: e for e in entries}
    live = live_run_ids(output, storage_options) if set(names) - {run_id} else set()
    removed = []
    for name, entry in sorted(names.items()):
        if name != run_id and name in live:
            continue  # another live run's rows: it removes them itself
        try:
            fs.rm(entry, recursive=True)
            removed.append(name)
        except FileNotFoundError:
            pass
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        try:
            os.rmdir(path)  # only when empty: no other run staged rows for this video
        except OSError:
            pass
    return removed
