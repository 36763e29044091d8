"""Atomic writes: a file or a Parquet table appears at its final URI whole or not at all.

Every published table and commit marker (``store.manifest``) goes through here. On a local/POSIX file system a temp
file in the destination folder is renamed over the final name (``os.replace``, atomic within one directory); on
object stores the bytes go up in a single PUT, or one multipart upload, which becomes visible only when complete.
A crash therefore leaves at most a hidden temp file (``.<name>.tmp-<uuid>``, never read by ``store.tables``). Ray
re-runs a task whose worker died (at least once; https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html),
so the same file may be written twice: deterministic keys and identical bytes make that harmless.
"""

from __future__ import annotations

import io
import os
import tempfile
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["join_uri", "put_atomic", "write_table_atomic", "AtomicParquetWriter"]


def join_uri(root: str, *parts: str) -> str:
    """``root`` and ``parts`` joined by single slashes (local paths and fsspec URIs alike)."""
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def put_atomic(data: bytes, uri: str, storage_options: dict | None = None) -> None:
    """Make ``uri`` hold exactly ``data``, never a partial object: rename locally, a single upload elsewhere."""
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic within one directory
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        fs.pipe_file(path, data)


def write_table_atomic(table: pa.Table, uri: str, storage_options: dict | None = None) -> int:
    """Serialise ``table`` to Parquet in memory and publish it atomically; returns the byte count."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    put_atomic(data, uri, storage_options)
    return len(data)


class AtomicParquetWriter:
    """A Parquet file written piece by piece (one row group per ``write``) and published atomically on ``commit``.

    For tables too long to hold in memory (a long video's keypoints): rows go to a temp file, never to memory.
    Locally the temp file sits in the destination folder and is renamed over the final name; on object stores it
    is a local temp file uploaded once (``put_file``; a multipart upload becomes visible only when complete).
    Leaving the ``with`` block without ``commit`` (an exception) removes the temp file and publishes nothing.
    """

    def __init__(self, uri: str, schema: pa.Schema, storage_options: dict | None = None) -> None:
        self.uri = uri
        self._fs, self._path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        self._local = isinstance(self._fs, fsspec.implementations.local.LocalFileSystem)
        if self._local:
            folder = os.path.dirname(self._path)
            os.makedirs(folder, exist_ok=True)
            self._tmp = os.path.join(folder, f".{os.path.basename(self._path)}.tmp-{uuid.uuid4().hex}")
        else:
            fd, self._tmp = tempfile.mkstemp(suffix=".parquet", prefix="raypose-")
            os.close(fd)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self._tmp, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            raise ValueError(f"{self.uri}: writer already closed")
        self._writer.write_table(table)

    def commit(self) -> int:
        """Close the file and publish it at ``uri``; returns its byte count."""
        self._writer.close()
        self._writer = None
        size = os.path.getsize(self._tmp)
        if self._local:
            with open(self._tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(self._tmp, self._path)
        else:
            try:
                self._fs.put_file(self._tmp, self._path)
            finally:
                os.remove(self._tmp)
        return size

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._writer is not None:
            self.abort()
