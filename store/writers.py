"""Atomic writes: a file or a Parquet table appears at its final URI whole or not at all.

Every published table and commit marker (``store.manifest``) goes through here. On a local/POSIX file system a temp
file is renamed over the final name (``os.replace``: atomic within one file system); on object stores the bytes go
up in a single PUT, or one multipart upload, which becomes visible only when complete. Ray re-runs a task whose
worker died (at least once; https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html), so the same file
may be written twice: deterministic keys and identical bytes make that harmless.

Where the temp file lives matters, because a crash (a killed publish) leaves it behind. A Parquet part of a
hive-partitioned table (``<output>/poses/video_id=<id>/part-0.parquet``) is written as
``<output>/_tmp/<table>~<partition>~<name>.<uuid>.tmp``, outside every table folder, so DuckDB's
``read_parquet('<output>/poses/**')``, ``pyarrow.dataset`` on a file list, Spark or Polars never meet it. Other files
(commit markers, run summaries) get a hidden ``.<name>.tmp-<uuid>`` beside them, which their readers skip by suffix.
``sweep_stale_temps`` deletes what dead writers left, by age.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import time
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "read_json_folder",
    "TMP_DIR",
    "STALE_TEMP_S",
    "join_uri",
    "put_atomic",
    "write_table_atomic",
    "AtomicParquetWriter",
    "sweep_stale_temps",
]

logger = logging.getLogger("raypose.store")

#: The folder under an output root that holds the temp files of table parts being written.
TMP_DIR = "_tmp"
#: Temp files untouched for this long belong to dead writers (a live writer's file is written at least once a shard).
STALE_TEMP_S = 24 * 3600.0

_HIVE = re.compile(r"^[^=]+=[^=]*$")


def join_uri(root: str, *parts: str) -> str:
    """``root`` and ``parts`` joined by single slashes (local paths and fsspec URIs alike)."""
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def _table_root(path: str) -> tuple[str, list[str]] | None:
    """For a local file of a hive-partitioned table (``<root>/<table>/<key>=<value>/…/<name>``): ``<root>`` and the
    path's parts below it; None for any other path."""
    parts = os.path.abspath(path).split(os.sep)
    i = len(parts) - 1  # the file name's index; walk up over the partition folders above it
    while i > 0 and _HIVE.match(parts[i - 1]):
        i -= 1
    if i == len(parts) - 1 or i < 3:  # no partition folder, or no folder above the table's
        return None
    return os.sep.join(parts[: i - 1]) or os.sep, parts[i - 1 :]


def _temp_path(path: str) -> str:
    """Where the temp file for the local file ``path`` is written (its folders made): ``<root>/_tmp/`` for a Parquet
    table part (when on the same file system as ``path``'s folder, so the rename stays atomic), else a hidden file
    beside ``path``."""
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    token = uuid.uuid4().hex
    found = _table_root(path) if name.endswith(".parquet") else None
    if found is not None:
        root, rel = found
        tmp_dir = os.path.join(root, TMP_DIR)
        os.makedirs(tmp_dir, exist_ok=True)
        if os.stat(tmp_dir).st_dev == os.stat(folder).st_dev:
            return os.path.join(tmp_dir, f"{'~'.join(rel)[-180:]}.{token}.tmp")
    return os.path.join(folder, f".{name}.tmp-{token}")


def put_atomic(data: bytes, uri: str, storage_options: dict | None = None) -> None:
    """Make ``uri`` hold exactly ``data``, never a partial object: rename locally, a single upload elsewhere."""
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        tmp = _temp_path(path)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic within one file system
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
    Locally the temp file sits in the output's ``_tmp/`` (see the module docstring) and is renamed over the final
    name; on object stores it is a local temp file uploaded once (``put_file``; a multipart upload becomes visible
    only when complete).
    Leaving the ``with`` block without ``commit`` (an exception) removes the temp file and publishes nothing.
    """

    def __init__(self, uri: str, schema: pa.Schema, storage_options: dict | None = None) -> None:
        self.uri = uri
        self._fs, self._path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        self._local = isinstance(self._fs, fsspec.implementations.local.LocalFileSystem)
        if self._local:
            self._tmp = _temp_path(self._path)
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


def _is_temp(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def sweep_stale_temps(output: str, storage_options: dict | None = None, *, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete the temp files that killed writers left under the local output ``output``: everything in ``_tmp/``,
    and the hidden ``.<name>.tmp-<uuid>`` files that earlier versions wrote inside the ``poses/`` and ``frames/``
    partition folders, if not modified for ``older_than_s`` seconds (a running writer's are younger, so a
    concurrent run is never disturbed). Object stores have no temp files: a no-op there. Best effort: what cannot
    be listed or removed is left alone. Returns the number of files removed."""
    fs, path = fsspec.core.url_to_fs(output, **(storage_options or {}))
    if not isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        return 0
    cutoff = time.time() - older_than_s
    candidates: list[str] = []

    def scan(folder: str, pick) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as it:
                return [e for e in it if pick(e)]
        except OSError:
            return []

    candidates += [e.path for e in scan(os.path.join(path, TMP_DIR), lambda e: e.is_file(follow_symlinks=False))]
    for table in ("poses", "frames"):
        for part in scan(os.path.join(path, table), lambda e: e.is_dir(follow_symlinks=False)):
            candidates += [e.path for e in scan(part.path, lambda e: _is_temp(e.name))]
    removed = 0
    for p in candidates:
        try:
            if os.stat(p).st_mtime < cutoff:
                os.remove(p)
                removed += 1
        except OSError:
            pass  # gone meanwhile (its writer committed or aborted), or not ours to remove
    if removed:
        logger.info("removed %d stale temp files of killed writers under %s", removed, output)
    return removed


def read_json_folder(folder: str, storage_options: dict | None = None) -> list[dict]:
    """The JSON objects of every ``*.json`` file in ``folder`` (local or fsspec URI), freshly listed.

    An empty list when the folder does not exist; a file that vanished meanwhile or is not valid JSON is skipped
    (commit markers and leases are written atomically, so such a file is someone else's half-state, never ours).
    """
    import json

    fs, path = fsspec.core.url_to_fs(folder, **(storage_options or {}))
    fs.invalidate_cache(path)  # object-store listings are cached per process; the files may be new since
    try:
        names = [p for p in fs.ls(path, detail=False) if p.endswith(".json")]
    except FileNotFoundError:
        return []
    out = []
    for p in names:
        try:
            with fs.open(p, "rb") as f:
                out.append(json.load(f))
        except (FileNotFoundError, ValueError):
            continue
    return out
