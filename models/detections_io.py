"""Precomputed person detections: COCO-format detection JSON and Parquet, looked up by frame identifier.

Large labelling runs often detect once and estimate poses many times; this module is the detection stage's source
for that case (``models.detectors.build_detector("precomputed", weights=PATH)``). Two file formats:

* **COCO detection JSON**, as AlphaPose's ``--detfile`` and MMPose's ``test_coco_det_AP_H_56.json``: a list of
  ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``. The box becomes ``[x, y, x + w, y + h]`` with no
  −1 (AlphaPose's ``alphapose/utils/file_detector.py``). Entries whose ``category_id`` is present and not 1 (COCO
  "person") are skipped; an entry without ``category_id`` counts as a person (AlphaPose's detfile has none).
* **Parquet** with columns ``image_key`` (string or integer), ``box_xyxy`` (list of 4 float32) and ``score``
  (float); ``write_detections_parquet`` writes that schema with ``box_xyxy`` as ``fixed_size_list<float32>[4]``.

Boxes are float32 ``[n, 4]`` xyxy in image pixels, in file order, exactly as stored (no clipping here; the
detector interface clips). Lookups accept the stored key or a file name: ``"000000000785.jpg"``, its path, or
``785`` all find COCO image 785 (see ``DetectionsTable.lookup``). An unknown frame has no detections, which is
not an error; a malformed file raises ``DetectionsFileError`` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import posixpath
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = [
    "DetectionsFileError",
    "DetectionsTable",
    "load_detections",
    "write_detections_parquet",
    "COCO_PERSON_CATEGORY",
]

COCO_PERSON_CATEGORY = 1

_EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)
_EMPTY_SCORES = np.zeros((0,), dtype=np.float32)


class DetectionsFileError(ValueError):
    """A detections file is missing, of an unknown format, or malformed; the message names the file and entry."""


def _key_candidates(key: object) -> list[str]:
    """The stored key first, then file-name forms: basename, stem, and the stem as an integer (COCO file names)."""
    s = str(key.item() if isinstance(key, np.generic) else key)
    out = [s]
    base = posixpath.basename(s.replace("\\", "/"))
    stem = base.rsplit(".", 1)[0] if "." in base else base
    for c in (base, stem):
        if c not in out:
            out.append(c)
    if stem.isdigit() and str(int(stem)) not in out:
        out.append(str(int(stem)))
    return out


class DetectionsTable:
    """Person boxes and scores per frame key, loaded from one file.

    Attributes:
        source: the file (credentials stripped).
        sha256: hex digest of the file's bytes (recorded as the "weights" of the precomputed detector).
    """

    def __init__(self, per_key: Mapping[str, tuple[np.ndarray, np.ndarray]], *, source: str, sha256: str) -> None:
        self._per_key = dict(per_key)
        self.source = source
        self.sha256 = sha256

    @classmethod
    def from_records(
        cls,
        keys: Iterable[object],
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        *,
        source: str = "<memory>",
        sha256: str = "",
    ) -> DetectionsTable:
        """Group flat records (one per box) by key, keeping their order.

        Args:
            keys: ``[N]`` frame keys (stored as ``str``).
            boxes_xyxy: float ``[N, 4]``; stored as float32.
            scores: float ``[N]``; stored as float32.
        """
        keys = [str(k.item() if isinstance(k, np.generic) else k) for k in keys]
        b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        s = np.asarray(scores, dtype=np.float32).reshape(-1)
        if not len(keys) == len(b) == len(s):
            raise ValueError(f"{source}: {len(keys)} keys, {len(b)} boxes and {len(s)} scores differ in length")
        rows: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            rows.setdefault(k, []).append(i)
        per_key = {k: (b[idx].copy(), s[idx].copy()) for k, idx in rows.items()}
        return cls(per_key, source=source, sha256=sha256)

    def keys(self) -> list[str]:
        """Frame keys present in the file, in first-appearance order."""
        return list(self._per_key)

    def __len__(self) -> int:
        """Number of boxes."""
        return sum(len(s) for _, s in self._per_key.values())

    def lookup(self, key: object) -> tuple[np.ndarray, np.ndarray]:
        """Boxes and scores of one frame.

        Args:
            key: an image id (``785``), a stored key, or a file name or path (``"a/000000000785.jpg"``): the
                exact string is tried first, then the basename, the stem, and the stem read as an integer.
        Returns:
            ``boxes_xyxy`` float32 ``[n, 4]`` and ``scores`` float32 ``[n]`` (copies, file order); ``n = 0`` for an
            unknown frame.
        """
        for k in _key_candidates(key):
            hit = self._per_key.get(k)
            if hit is not None:
                return hit[0].copy(), hit[1].copy()
        return _EMPTY_BOXES.copy(), _EMPTY_SCORES.copy()

    def to_records(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Flat ``(keys [N], boxes float32 [N, 4], scores float32 [N])`` grouped by key (``from_records``'s inverse)."""
        keys: list[str] = []
        for k, (_, s) in self._per_key.items():
            keys += [k] * len(s)
        if not self._per_key:
            return keys, _EMPTY_BOXES.copy(), _EMPTY_SCORES.copy()
        boxes = np.concatenate([b for b, _ in self._per_key.values()])
        scores = np.concatenate([s for _, s in self._per_key.values()])
        return keys, boxes, scores


def _read_bytes(path_or_url: str, source: str) -> bytes:
    import fsspec

    try:
        with fsspec.open(str(path_or_url), "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError):
        raise DetectionsFileError(f"detections file not found: {source}") from None


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_json(data: bytes, source: str, sha256: str) -> DetectionsTable:
    try:
        items = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DetectionsFileError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(items, list):
        raise DetectionsFileError(
            f"{source}: expected a JSON list of {{image_id, category_id, bbox: [x, y, w, h], score}} records, "
            f"found a {type(items).__name__}"
        )
    keys: list[str] = []
    boxes: list[list[float]] = []
    scores: list[float] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DetectionsFileError(f"{source}: entry {i} is a {type(item).__name__}, expected an object")
        missing = [k for k in ("image_id", "bbox", "score") if k not in item]
        if missing:
            raise DetectionsFileError(f"{source}: entry {i} lacks {', '.join(missing)} (has {sorted(item)})")
        bbox, score, image_id = item["bbox"], item["score"], item["image_id"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise DetectionsFileError(f"{source}: entry {i} bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
        if not _number(score):
            raise DetectionsFileError(f"{source}: entry {i} score must be a finite number, got {score!r}")
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            raise DetectionsFileError(f"{source}: entry {i} image_id must be an integer or a string, got {image_id!r}")
        if item.get("category_id", COCO_PERSON_CATEGORY) != COCO_PERSON_CATEGORY:
            continue
        x, y, w, h = (float(v) for v in bbox)
        # xywh → xyxy in float64, then one rounding to float32: x + w, no −1 (as AlphaPose's file_detector.py).
        boxes.append([x, y, x + w, y + h])
        scores.append(float(score))
        keys.append(str(image_id))
    return DetectionsTable.from_records(
        keys,
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(scores, dtype=np.float64),
        source=source,
        sha256=sha256,
    )


def _parse_parquet(data: bytes, source: str, sha256: str) -> DetectionsTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise DetectionsFileError(f"{source}: not a readable Parquet file ({e})") from None
    missing = [c for c in ("image_key", "box_xyxy", "score") if c not in table.column_names]
    if missing:
        raise DetectionsFileError(
            f"{source}: missing column(s) {', '.join(missing)}; expected image_key, box_xyxy (4 floats), score; "
            f"found {', '.join(table.column_names)}"
        )
    keys = table.column("image_key").to_pylist()
    if any(k is None for k in keys):
        raise DetectionsFileError(f"{source}: image_key has null values")
    box_col = table.column("box_xyxy").combine_chunks()
    if (
        not (
            pa.types.is_list(box_col.type)
            or pa.types.is_fixed_size_list(box_col.type)
            or pa.types.is_large_list(box_col.type)
        )
        or box_col.null_count
    ):
        raise DetectionsFileError(f"{source}: box_xyxy must be a non-null list of 4 floats, found {box_col.type}")
    if pa.types.is_fixed_size_list(box_col.type):
        if box_col.type.list_size != 4:
            raise DetectionsFileError(f"{source}: box_xyxy holds {box_col.type.list_size} values per row, expected 4")
        lengths = None
    else:
        lengths = np.asarray(box_col.value_lengths())
    if lengths is not None and len(lengths) and not np.all(lengths == 4):
        bad = int(np.flatnonzero(lengths != 4)[0])
        raise DetectionsFileError(f"{source}: row {bad} box_xyxy has {int(lengths[bad])} values, expected 4")
    try:
        flat = np.asarray(box_col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        scores = np.asarray(table.column("score").to_numpy(), dtype=np.float32)
    except (TypeError, ValueError, pa.ArrowInvalid) as e:
        raise DetectionsFileError(f"{source}: box_xyxy/score are not numeric ({e})") from None
    if flat.size != 4 * len(keys):
        raise DetectionsFileError(f"{source}: box_xyxy holds {flat.size} values for {len(keys)} rows, expected 4 each")
    return DetectionsTable.from_records(keys, flat.reshape(-1, 4), scores, source=source, sha256=sha256)


def load_detections(path_or_url: str) -> DetectionsTable:
    """Read a detections file (``.json`` COCO format or ``.parquet``/``.pq``) from a path or fsspec URL.

    Returns:
        ``DetectionsTable`` with the sha256 of the file's bytes.
    Raises:
        DetectionsFileError: missing file, unknown extension (the message lists the formats), or malformed
            content (the message names the file and the first bad entry or column).
    """
    from models.uris import redact_uri

    source = redact_uri(path_or_url)
    lower = source.lower()
    if lower.endswith(".json"):
        parse = _parse_json
    elif lower.endswith((".parquet", ".pq")):
        parse = _parse_parquet
    else:
        raise DetectionsFileError(f"{source}: unknown detections format; use .json (COCO detections) or .parquet")
    data = _read_bytes(path_or_url, source)
    return parse(data, source, hashlib.sha256(data).hexdigest())


def write_detections_parquet(table: DetectionsTable, path_or_url: str) -> None:
    """Write ``table`` as Parquet: ``image_key`` string, ``box_xyxy`` fixed_size_list<float32>[4], ``score`` float32."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys, boxes, scores = table.to_records()
    schema = pa.schema([("image_key", pa.string()), ("box_xyxy", pa.list_(pa.float32(), 4)), ("score", pa.float32())])
    arrow = pa.table(
        {
            "image_key": pa.array(keys, type=pa.string()),
            "box_xyxy": pa.FixedSizeListArray.from_arrays(pa.array(boxes.reshape(-1), type=pa.float32()), 4),
            "score": pa.array(scores, type=pa.float32()),
        },
        schema=schema,
    )
    with fsspec.open(str(path_or_url), "wb") as f:
        pq.write_table(arrow, f)
