"""The training-sample table: one row per proposal crop, written by ``jobs.proposals`` and read by ``jobs.train_sppe``.

Defined once here so the writer and the reader cannot drift. One row is what AlphaPose's ``SimpleTransform``
(``alphapose/utils/presets/simple_transform.py``, train mode) hands the network for one person: the input crop and the
keypoints in crop pixels with their target weights. The heatmaps are not stored (17 × 64 × 48 float32 = 209 KB per
row); the trainer renders them from the crop keypoints (``models.targets.gaussian_targets``), which is the same
function of the same numbers.

Layout of a proposal run (``jobs.proposals``)::

    <output>/samples/shard=<id>/part-0.parquet    training samples of one annotation shard
    <output>/errors/shard=<id>/part-0.parquet     images that could not be read (the shard's other images are kept)
    <output>/_manifest/<id>.json                  commit marker (store.manifest discipline)

Crops are stored raw (``crop_format="raw"``: H·W·3 uint8 bytes, row-major RGB; exact) or as JPEG
(``"jpeg"``: smaller, lossy); ``decode_crop`` reads both.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

__all__ = [
    "TRAINING_SCHEMA_VERSION",
    "SAMPLE_SCHEMA",
    "SAMPLE_ERRORS_SCHEMA",
    "PROPOSAL_BRANCHES",
    "CROP_FORMATS",
    "sample_table",
    "decode_crop",
    "encode_crop",
    "sample_arrays",
    "ShardManifest",
    "samples_uri",
    "errors_uri",
    "write_shard_manifest",
    "read_shard_manifests",
]

TRAINING_SCHEMA_VERSION = "2"  # 2: interference joints (JC-SPPE targets)

#: How the proposal box was drawn: "gt" (the annotation's box, AlphaPose's first phase), "jitter" / "patch"
#: (AlphaPose's released DPG branches, models.pgpg.dpg_proposal), "pgpg" (the paper's pose-guided generator,
#: models.pgpg.pgpg_proposal).
PROPOSAL_BRANCHES = ("gt", "jitter", "patch", "pgpg")
CROP_FORMATS = ("raw", "jpeg")

_F32_LIST = pa.list_(pa.float32())
_F64_LIST = pa.list_(pa.float64())

SAMPLE_SCHEMA = pa.schema(
    [
        # provenance: deterministic per (source, image_id, person_index, epoch, proposal_index, seed)
        pa.field("sample_id", pa.string(), nullable=False),  # sanitized, unique within a run
        pa.field("source", pa.string(), nullable=False),  # annotation file / raypose output the person came from
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("person_index", pa.int32(), nullable=False),  # index of the person in its image's annotations
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("proposal_index", pa.int32(), nullable=False),  # 0 … N−1 proposals per person and epoch
        pa.field("seed", pa.int64(), nullable=False),
        # the label: "gt" (human annotation) or "pseudo" (a raypose keypoint table above a score threshold)
        pa.field("label_kind", pa.string(), nullable=False),
        pa.field("label_score", pa.float32()),  # the pseudo-label's person score; null for "gt"
        # the proposal
        pa.field("gt_box_xyxy", _F64_LIST, nullable=False),  # [4] image pixels
        pa.field("proposal_box_xyxy", _F64_LIST, nullable=False),  # [4] image pixels, the box the crop was cut from
        pa.field("branch", pa.string(), nullable=False),  # PROPOSAL_BRANCHES
        pa.field("truncation", pa.string(), nullable=False),  # models.pgpg.TRUNCATIONS or "none"
        pa.field("atom", pa.int32()),  # PGPG atomic pose (-1: pooled mixture); null unless branch == "pgpg"
        pa.field("empty", pa.bool_(), nullable=False),  # no labelled joint inside the proposal: input zeroed
        # the crop and its geometry
        pa.field("crop", pa.binary(), nullable=False),
        pa.field("crop_format", pa.string(), nullable=False),  # CROP_FORMATS
        pa.field("crop_height", pa.int32(), nullable=False),
        pa.field("crop_width", pa.int32(), nullable=False),
        pa.field("image_to_crop", _F64_LIST, nullable=False),  # [6] row-major 2×3 affine, original image → crop
        pa.field("flipped", pa.bool_(), nullable=False),  # mirrored (left/right joints already swapped)
        # the targets, in crop (network-input) pixels
        pa.field("keypoints", _F32_LIST, nullable=False),  # [K*2] x, y; NaN where the joint has no target
        pa.field("target_weight", _F32_LIST, nullable=False),  # [K] 0 or 1
        pa.field("num_joints", pa.int32(), nullable=False),
        # CrowdPose's interference joints (models.proposals.crop_interference): the other labelled persons' joints
        # inside the crop, crop pixels, and their joint types (mirrored with the sample); JC-SPPE targets read them
        pa.field("interference_keypoints", _F32_LIST, nullable=False),  # [J*2] x, y
        pa.field("interference_types", pa.list_(pa.int16()), nullable=False),  # [J]
    ]
)

SAMPLE_ERRORS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
    ]
)


def encode_crop(crop: np.ndarray, crop_format: str = "raw", jpeg_quality: int = 95) -> bytes:
    """uint8 ``[H, W, 3]`` RGB → bytes in ``crop_format``."""
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"a crop must be uint8 [H, W, 3], got {crop.dtype} {crop.shape}")
    if crop_format == "raw":
        return np.ascontiguousarray(crop).tobytes()
    if crop_format == "jpeg":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, format="JPEG", quality=jpeg_quality)
        return buf.getvalue()
    raise ValueError(f"crop_format must be one of {CROP_FORMATS}, got {crop_format!r}")


def decode_crop(data: bytes, crop_format: str, height: int, width: int) -> np.ndarray:
    """bytes of one ``crop`` cell → uint8 ``[height, width, 3]`` RGB."""
    if crop_format == "raw":
        arr = np.frombuffer(data, dtype=np.uint8)
        if arr.size != height * width * 3:
            raise ValueError(f"raw crop has {arr.size} bytes, expected {height}×{width}×3")
        return arr.reshape(height, width, 3)
    if crop_format == "jpeg":
        from PIL import Image

        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        if img.shape != (height, width, 3):
            raise ValueError(f"jpeg crop is {img.shape}, expected ({height}, {width}, 3)")
        return img
    raise ValueError(f"crop_format must be one of {CROP_FORMATS}, got {crop_format!r}")


def sample_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with every ``SAMPLE_SCHEMA`` column; arrays allowed for the list columns) → a table with the
    schema, checked: list lengths (4, 4, 6, 2K, K), branch and crop_format values."""
    for r in rows:
        k = int(r["num_joints"])
        for name, n in (("gt_box_xyxy", 4), ("proposal_box_xyxy", 4), ("image_to_crop", 6)):
            if np.size(r[name]) != n:
                raise ValueError(f"{r['sample_id']}: {name} has {np.size(r[name])} values, expected {n}")
        if np.size(r["keypoints"]) != 2 * k or np.size(r["target_weight"]) != k:
            raise ValueError(f"{r['sample_id']}: keypoints/target_weight do not match num_joints={k}")
        if np.size(r["interference_keypoints"]) != 2 * np.size(r["interference_types"]):
            raise ValueError(f"{r['sample_id']}: interference_keypoints/interference_types lengths differ")
        if r["branch"] not in PROPOSAL_BRANCHES or r["crop_format"] not in CROP_FORMATS:
            raise ValueError(f"{r['sample_id']}: branch {r['branch']!r} / crop_format {r['crop_format']!r}")
    cols = {}
    for field in SAMPLE_SCHEMA:
        vals = [r[field.name] for r in rows]
        if pa.types.is_list(field.type):
            vals = [np.asarray(v, dtype=field.type.value_type.to_pandas_dtype()).reshape(-1).tolist() for v in vals]
        cols[field.name] = pa.array(vals, type=field.type)
    return pa.table(cols, schema=SAMPLE_SCHEMA)


def sample_arrays(batch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of sample rows (numpy columns, as Ray Data's ``map_batches`` gives them, or ``table.to_pydict()``)
    → ``crops`` uint8 ``[B, H, W, 3]`` (zeroed where ``empty``, as AlphaPose zeroes the input), ``keypoints`` float32
    ``[B, K, 2]`` in crop pixels (NaN where no target) and ``target_weight`` float32 ``[B, K]``."""
    n = len(batch["sample_id"])
    crops = np.stack(
        [
            decode_crop(
                batch["crop"][i],
                str(batch["crop_format"][i]),
                int(batch["crop_height"][i]),
                int(batch["crop_width"][i]),
            )  # fmt: skip
            for i in range(n)
        ]
    )
    empty = np.asarray(batch["empty"], dtype=bool)
    if empty.any():
        crops = crops.copy()
        crops[empty] = 0
    k = int(np.asarray(batch["num_joints"])[0]) if n else 0
    kps = np.stack([np.asarray(v, dtype=np.float32) for v in batch["keypoints"]]).reshape(n, k, 2) if n else None
    w = np.stack([np.asarray(v, dtype=np.float32) for v in batch["target_weight"]]).reshape(n, k) if n else None
    return crops, kps, w


# ---- layout and commit markers of a proposal run ------------------------------------------------------------------


def samples_uri(output: str, shard_id: str) -> str:
    """``<output>/samples/shard=<id>/part-0.parquet``."""
    from store.writers import join_uri

    return join_uri(output, "samples", f"shard={shard_id}", "part-0.parquet")


def errors_uri(output: str, shard_id: str) -> str:
    """``<output>/errors/shard=<id>/part-0.parquet``."""
    from store.writers import join_uri

    return join_uri(output, "errors", f"shard={shard_id}", "part-0.parquet")


@dataclass(frozen=True)
class ShardManifest:
    """The commit marker of one annotation shard (``<output>/_manifest/<shard_id>.json``), written after its samples
    and errors tables (``store.manifest``'s discipline: the marker is the commit point).

    ``config_hash`` covers every setting that changes a sample; ``shard_hash`` the shard's labels (its image list
    and persons), so an edited annotation file makes the shard run again."""

    shard_id: str
    source: str
    config_hash: str
    shard_hash: str
    run_id: str
    num_images: int
    num_persons: int
    num_samples: int
    num_errors: int
    files: tuple[str, ...]


def write_shard_manifest(output: str, manifest: ShardManifest, storage_options: dict | None = None) -> None:
    """Publish ``manifest`` atomically (commits the shard)."""
    from store.writers import join_uri, put_atomic

    body = json.dumps(asdict(manifest), indent=1, sort_keys=True).encode()
    put_atomic(body, join_uri(output, "_manifest", f"{manifest.shard_id}.json"), storage_options)


def read_shard_manifests(output: str, storage_options: dict | None = None) -> dict[str, ShardManifest]:
    """shard_id → commit marker, for every readable marker under ``output`` (empty when none)."""
    from store.writers import join_uri, read_json_folder

    out = {}
    for d in read_json_folder(join_uri(output, "_manifest"), storage_options):
        try:
            d["files"] = tuple(d.get("files", ()))
            m = ShardManifest(**d)
        except (TypeError, KeyError, AttributeError):
            continue  # not one of ours (or half-written by an older version): the shard runs again
        out[m.shard_id] = m
    return out
