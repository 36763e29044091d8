"""Read a published output folder back: the keypoint and frames tables, per-video metadata, and frame sources.

Used by everything that consumes ``jobs.label``'s output — evaluation (``jobs.evaluate``), exports
(``jobs.export``) and the renderer — so that the folder layout (``store.schema``) is parsed in one place::

    <output>/poses/video_id=<id>/part-0.parquet     keypoint table (one row per person per frame)
    <output>/frames/video_id=<id>/part-0.parquet    frames table (every frame, persons or not)
    <output>/_manifest/<id>.json                    commit marker (store.manifest.Manifest)

``output`` may be a local path or any fsspec URI (``s3://bucket/prefix``). Tables come back as ``pyarrow.Table``
with a plain-string ``video_id`` column (restored from the hive folder names), sorted by ``video_id``,
``frame_index`` (and ``person_index``), so results never depend on file-listing order; call ``.to_pandas()`` for
pandas. ``pose_arrays`` turns a keypoint table into NumPy arrays (``keypoints`` float32 ``[P, K, 2]`` in
source-image pixels, …) for the numeric work.

Hidden files (``.part-0.parquet.tmp-…`` left by an interrupted atomic write) are never read. Tables whose commit
marker is missing (a crashed run's last video) are read unless ``committed_only=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from store.manifest import Manifest, read_manifests
from store.schema import FRAMES_SCHEMA, KEYPOINT_SCHEMA
from store.sources import VIDEO_EXTENSIONS, InputError, list_inputs
from store.writers import join_uri

__all__ = [
    "OutputNotFoundError",
    "OutputTables",
    "PoseArrays",
    "VideoFrames",
    "default_storage_options",
    "list_video_ids",
    "read_poses",
    "read_frames",
    "read_video_metadata",
    "load_output",
    "pose_arrays",
    "split_by_video",
    "video_frames",
]

_PARTITIONING = ds.partitioning(pa.schema([("video_id", pa.string())]), flavor="hive")


class OutputNotFoundError(FileNotFoundError):
    """The folder is not a published output (no ``poses/`` or ``frames/`` under it)."""


def default_storage_options() -> dict:
    """fsspec options from the environment, as ``jobs.label`` builds them: only the S3 endpoint
    (``RAYPOSE_S3_ENDPOINT``); credentials stay in the environment."""
    endpoint = os.environ.get("RAYPOSE_S3_ENDPOINT")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def _fs(output: str, sub: str, storage_options: dict | None):
    return fsspec.core.url_to_fs(join_uri(output, sub), **(storage_options or {}))


def _partition_ids(output: str, sub: str, storage_options: dict | None) -> list[str] | None:
    """video_ids of the ``video_id=<id>`` folders under ``output/sub``; None when the folder does not exist."""
    fs, path = _fs(output, sub, storage_options)
    try:
        if not fs.isdir(path):
            return None
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return None
    ids = []
    for e in entries:
        name = e.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("video_id="):
            ids.append(name[len("video_id=") :])
    return ids


def list_video_ids(output: str, storage_options: dict | None = None, *, committed_only: bool = False) -> list[str]:
    """Sorted video ids published under ``output`` (the union of the ``poses/`` and ``frames/`` partitions).

    Raises:
        OutputNotFoundError: neither ``poses/`` nor ``frames/`` exists under ``output``.
    """
    poses = _partition_ids(output, "poses", storage_options)
    frames = _partition_ids(output, "frames", storage_options)
    if poses is None and frames is None:
        raise OutputNotFoundError(
            f"{output} is not a raypose output folder: neither {join_uri(output, 'poses')} nor "
            f"{join_uri(output, 'frames')} exists (expected the --output of jobs.label)"
        )
    ids = sorted(set(poses or ()) | set(frames or ()))
    if committed_only:
        committed = read_manifests(output, storage_options)
        ids = [v for v in ids if v in committed]
    return ids


def _check_ids(output: str, video_ids, storage_options) -> list[str]:
    available = list_video_ids(output, storage_options)
    if video_ids is None:
        return available
    wanted = [str(v) for v in ([video_ids] if isinstance(video_ids, str) else video_ids)]
    missing = [v for v in wanted if v not in available]
    if missing:
        shown = ", ".join(available[:20]) + (f", … ({len(available)} in all)" if len(available) > 20 else "")
        raise ValueError(f"video_id {', '.join(missing)} not found under {output}; available: {shown or '(none)'}")
    return sorted(set(wanted))


def _read(
    output: str, sub: str, schema: pa.Schema, video_ids: list[str], columns, sort_keys, storage_options
) -> pa.Table:
    full = schema.append(pa.field("video_id", pa.string()))
    cols = None if columns is None else list(dict.fromkeys([*columns, "video_id"]))
    fs, path = _fs(output, sub, storage_options)
    if not video_ids or not fs.isdir(path):
        empty = full.empty_table()
        return empty.select(cols) if cols else empty
    dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning=_PARTITIONING, schema=full)
    table = dataset.to_table(columns=cols, filter=pc.field("video_id").isin(video_ids))
    keys = [(k, "ascending") for k in sort_keys if cols is None or k in cols]
    return table.sort_by(keys) if keys and table.num_rows else table


def read_poses(
    output: str,
    video_ids: str | list[str] | None = None,
    *,
    columns: list[str] | None = None,
    storage_options: dict | None = None,
) -> pa.Table:
    """The keypoint table of ``output`` (all videos, or ``video_ids``), plus a string ``video_id`` column.

    Args:
        output: the output folder (local path or fsspec URI).
        video_ids: one id or a list; None for all.
        columns: keypoint-table columns to read (``video_id`` is always added); None for all.
    Returns:
        ``pyarrow.Table`` sorted by (video_id, frame_index, person_index); zero rows when nothing was detected.
    Raises:
        OutputNotFoundError: not an output folder. ValueError: an unknown video id (the message lists the known).
    """
    ids = _check_ids(output, video_ids, storage_options)
    return _read(
        output, "poses", KEYPOINT_SCHEMA, ids, columns, ("video_id", "frame_index", "person_index"), storage_options
    )


def read_frames(
    output: str, video_ids: str | list[str] | None = None, *, storage_options: dict | None = None
) -> pa.Table:
    """The frames table (frame_index, timestamp_s, n_persons, status, video_id), sorted by (video_id, frame_index)."""
    ids = _check_ids(output, video_ids, storage_options)
    return _read(output, "frames", FRAMES_SCHEMA, ids, None, ("video_id", "frame_index"), storage_options)


def read_video_metadata(
    output: str, video_ids: str | list[str] | None = None, *, storage_options: dict | None = None
) -> dict[str, dict[str, str]]:
    """Per video, the ``raypose.*`` key-value metadata of its keypoint-table file (``schema_version``,
    ``random_weights``, ``run_id``, ``config`` …, keys without the ``raypose.`` prefix). Reads only file footers."""
    return _metadata(output, _check_ids(output, video_ids, storage_options), storage_options)


def _metadata(output: str, ids: list[str], storage_options: dict | None) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for vid in ids:
        fs, path = _fs(output, f"poses/video_id={vid}/part-0.parquet", storage_options)
        try:
            with fs.open(path, "rb") as f:
                md = pq.read_schema(f).metadata or {}
        except FileNotFoundError:
            md = {}
        out[vid] = {
            k.decode()[len("raypose.") :]: v.decode() for k, v in md.items() if k.decode().startswith("raypose.")
        }
    return out


@dataclass(frozen=True)
class OutputTables:
    """An output folder, read: both tables, per-video metadata and commit markers."""

    output: str
    video_ids: tuple[str, ...]
    poses: pa.Table
    frames: pa.Table
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)

    @property
    def random_weights(self) -> bool:
        """True when any selected video was labelled with random weights (its keypoints are not pose estimates)."""
        if any(m.get("random_weights") == "true" for m in self.metadata.values()):
            return True
        return any(self.manifests[v].random_weights for v in self.video_ids if v in self.manifests)


def load_output(
    output: str,
    video_ids: str | list[str] | None = None,
    *,
    committed_only: bool = False,
    storage_options: dict | None = None,
) -> OutputTables:
    """Read the poses and frames tables, metadata and manifests of ``output`` (optionally only ``video_ids``;
    with ``committed_only``, only videos whose commit marker exists)."""
    ids = _check_ids(output, video_ids, storage_options)
    manifests = read_manifests(output, storage_options)
    if committed_only:
        ids = [v for v in ids if v in manifests]
    return OutputTables(
        output=output,
        video_ids=tuple(ids),
        poses=_read(
            output, "poses", KEYPOINT_SCHEMA, ids, None, ("video_id", "frame_index", "person_index"), storage_options
        ),
        frames=_read(output, "frames", FRAMES_SCHEMA, ids, None, ("video_id", "frame_index"), storage_options),
        metadata=_metadata(output, ids, storage_options),
        manifests={v: m for v, m in manifests.items() if v in ids},
    )


def split_by_video(table: pa.Table) -> dict[str, pa.Table]:
    """video_id → that video's rows, as zero-copy slices of a table sorted by ``video_id`` (as read here)."""
    if table.num_rows == 0:
        return {}
    vids = table.column("video_id").to_pylist()
    out, start = {}, 0
    for i in range(1, len(vids) + 1):
        if i == len(vids) or vids[i] != vids[start]:
            if vids[start] in out:
                raise ValueError("table is not sorted by video_id")
            out[vids[start]] = table.slice(start, i - start)
            start = i
    return out


@dataclass(frozen=True)
class PoseArrays:
    """A keypoint table as NumPy arrays (P rows, K keypoints; every array in the table's row order).

    Attributes:
        video_id, source_uri, keypoint_set: object ``[P]``.
        frame_index: int64 ``[P]``; person_index: int64 ``[P]``.
        track_id: int64 ``[P]``, 0 where the row is untracked (track ids are ≥ 1).
        timestamp_s: float64 ``[P]``, NaN for image units.
        image_width, image_height: int64 ``[P]``.
        box_xyxy: float32 ``[P, 4]`` detector box (x1, y1, x2, y2), source-image pixels.
        box_score, pose_score: float32 ``[P]``.
        keypoints: float32 ``[P, K, 2]`` (x, y) source-image pixels; keypoint_scores: float32 ``[P, K]``.
    """

    video_id: np.ndarray
    source_uri: np.ndarray
    frame_index: np.ndarray
    person_index: np.ndarray
    track_id: np.ndarray
    timestamp_s: np.ndarray
    image_width: np.ndarray
    image_height: np.ndarray
    box_xyxy: np.ndarray
    box_score: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    pose_score: np.ndarray
    keypoint_set: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_index)

    @property
    def tracked(self) -> np.ndarray:
        """bool ``[P]``: the row has a track id."""
        return self.track_id > 0

    def take(self, index: np.ndarray) -> PoseArrays:
        """The rows at ``index`` (int indices or a bool mask)."""
        return PoseArrays(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})


def _flat(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def pose_arrays(table: pa.Table) -> PoseArrays:
    """Convert a keypoint table (as ``read_poses`` returns it) into ``PoseArrays``.

    Raises:
        ValueError: rows with different keypoint counts (e.g. two videos labelled with different keypoint sets):
            select one video or one ``keypoint_set`` first.
    """
    p = table.num_rows
    kp_col = _flat(table.column("keypoints"))
    lengths = pc.list_value_length(kp_col).to_numpy(zero_copy_only=False) if p else np.zeros(0, np.int64)
    k = int(lengths[0]) if p else 0
    if p and not np.all(lengths == k):
        raise ValueError(
            f"rows have different keypoint counts {sorted(set(lengths.tolist()))} (keypoint sets "
            f"{sorted(set(table.column('keypoint_set').to_pylist()))}); select one video or keypoint set"
        )
    kps = np.asarray(kp_col.flatten().flatten().to_numpy(zero_copy_only=False), np.float32).reshape(p, k, 2)
    scores = np.asarray(
        _flat(table.column("keypoint_scores")).flatten().to_numpy(zero_copy_only=False), np.float32
    ).reshape(p, k)
    boxes = np.asarray(_flat(table.column("box_xyxy")).flatten().to_numpy(zero_copy_only=False), np.float32).reshape(
        p, 4
    )

    def num(name, dtype, fill):
        return np.asarray(_flat(table.column(name)).fill_null(fill).to_numpy(zero_copy_only=False), dtype)

    def obj(name):
        return np.asarray(table.column(name).to_pylist(), dtype=object).reshape(p)

    return PoseArrays(
        video_id=obj("video_id") if "video_id" in table.column_names else np.full(p, "", dtype=object),
        source_uri=obj("source_uri"),
        frame_index=num("frame_index", np.int64, 0),
        person_index=num("person_index", np.int64, 0),
        track_id=num("track_id", np.int64, 0),
        timestamp_s=num("timestamp_s", np.float64, np.nan),
        image_width=num("image_width", np.int64, 0),
        image_height=num("image_height", np.int64, 0),
        box_xyxy=boxes,
        box_score=num("box_score", np.float32, 0.0),
        keypoints=kps,
        keypoint_scores=scores,
        pose_score=num("pose_score", np.float32, 0.0),
        keypoint_set=obj("keypoint_set"),
    )


@dataclass(frozen=True)
class VideoFrames:
    """Where each frame of one published video came from.

    Attributes:
        video_id: the output partition key.
        kind: ``"video"`` (one media file), ``"images"`` (a folder of images, one per frame) or ``"unknown"``
            (no persons and no commit marker: nothing says).
        source_uri: the unit's URI (the video file or the image folder), "" when unknown.
        frame_indices: int64 ``[F]`` every frame of the frames table (all frames, persons or not).
        frame_uris: frame_index → media URI (the video for every frame of a video; the image file for image
            units). For image units, frames without persons are named by listing the unit's folder again (from
            its commit marker) when that listing agrees with the table; otherwise they are absent here.
    """

    video_id: str
    kind: str
    source_uri: str
    frame_indices: np.ndarray
    frame_uris: dict[int, str]

    @property
    def name(self) -> str:
        """The unit's own name: the video file's stem or the image folder's name ("" when unknown)."""
        base = self.source_uri.rstrip("/").rsplit("/", 1)[-1]
        if self.kind == "video" and "." in base:
            base = base.rsplit(".", 1)[0]
        return base


def video_frames(
    output: str,
    video_id: str,
    *,
    poses: pa.Table | None = None,
    frames: pa.Table | None = None,
    manifest: Manifest | None = None,
    list_images: bool = True,
    storage_options: dict | None = None,
) -> VideoFrames:
    """Frame → source mapping of one video (see ``VideoFrames``).

    Args:
        output: the output folder.
        video_id: the video.
        poses, frames: that video's rows (or tables holding several videos; filtered here); read when None.
        manifest: its commit marker; read when None.
        list_images: for image units, list the unit's folder to name frames that have no persons.
    """
    if poses is None:
        poses = read_poses(
            output, video_id, columns=["frame_index", "source_uri", "timestamp_s"], storage_options=storage_options
        )
    if frames is None:
        frames = read_frames(output, video_id, storage_options=storage_options)
    if "video_id" in poses.column_names:
        poses = poses.filter(pc.equal(poses.column("video_id"), video_id))
    if "video_id" in frames.column_names:
        frames = frames.filter(pc.equal(frames.column("video_id"), video_id))
    if manifest is None:
        manifest = read_manifests(output, storage_options).get(video_id)

    row_frames = poses.column("frame_index").to_pylist()
    row_uris = poses.column("source_uri").to_pylist()
    by_frame: dict[int, str] = {}
    for f, u in zip(row_frames, row_uris):
        by_frame.setdefault(int(f), u)
    frame_indices = np.unique(
        np.concatenate(
            [np.asarray(frames.column("frame_index").to_pylist(), np.int64), np.asarray(row_frames, np.int64)]
        )
    )

    unit_uri = manifest.source_uri if manifest is not None else ""
    if unit_uri:
        kind = "video" if unit_uri.lower().endswith(VIDEO_EXTENSIONS) else "images"
    elif by_frame:
        uris = set(by_frame.values())
        one = next(iter(uris))
        kind = "video" if len(uris) == 1 and one.lower().endswith(VIDEO_EXTENSIONS) else "images"
        unit_uri = one if kind == "video" else one.rsplit("/", 1)[0]
    else:
        kind = "unknown"

    if kind == "video":
        return VideoFrames(video_id, kind, unit_uri, frame_indices, {int(f): unit_uri for f in frame_indices})
    uris = dict(by_frame)
    if kind == "images" and list_images and manifest is not None and len(uris) < len(frame_indices):
        listed = _list_unit_frames(manifest, storage_options)
        # Use the listing only when it is the same sequence: as many files, and the same file at every known frame.
        if (
            listed is not None
            and len(listed) == len(frame_indices)
            and np.array_equal(frame_indices, np.arange(len(listed)))
            and all(listed[f] == u for f, u in by_frame.items())
        ):
            uris = {i: u for i, u in enumerate(listed)}
    return VideoFrames(video_id, kind, unit_uri, frame_indices, uris)


def _list_unit_frames(manifest: Manifest, storage_options: dict | None) -> tuple[str, ...] | None:
    try:
        units = list_inputs([manifest.source_uri], storage_options)
    except (InputError, OSError, ValueError):
        return None
    for u in units:
        if u.video_id == manifest.video_id:
            return u.frames
    return None
