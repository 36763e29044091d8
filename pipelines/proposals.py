"""Training samples for the SPPE, made ahead of training: annotation shards → proposals → Parquet (jobs.proposals).

The shape of the pipeline::

    from_items(shards) ─map_batches(generate_shard)     CPU tasks, one shard at a time: read its images, N
                                                         proposals per person per epoch (models.proposals), write
                                                         samples + errors atomically, then the commit marker

A shard is ``images_per_shard`` consecutive images of one label source (``store.labels``; sorted by image id) with
their persons, as a plain dict. Each task holds one image and at most ``rows_per_group`` encoded samples at a time:
the samples go to the shard's Parquet file one row group at a time (``store.writers.AtomicParquetWriter``, published
whole on commit), so memory stays bounded whatever the shard size. The layout and the columns are
``store.training``'s; the commit marker (``store.training.ShardManifest``) is written last, so a shard is either
committed with both tables or runs again.

Determinism: a sample is a function of (seed, epoch, image id, person index, proposal index) and its labels
(``models.proposals.sample_rng``), never of the shard layout, the worker or the order; rerunning, resuming or
changing ``images_per_shard`` gives the same bytes per ``sample_id``.

A bad or missing image (or one whose decoded size differs from its annotation) becomes an error row naming it; the
shard's other images go on. A person whose box cannot make a proposal (no area) is an error row too.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from models.keypoints import KEYPOINT_SETS
from models.pgpg import PGPGModel
from models.proposals import DPG_VARIANTS, PROPOSAL_MODES, crop_interference, proposal_sample, sample_rng
from models.targets import ALPHAPOSE_1X_AUGMENT, NO_AUGMENT, TrainAugment
from store.labels import ImageLabels, LabelSource
from store.sources import sanitize_id
from store.training import (
    CROP_FORMATS,
    SAMPLE_ERRORS_SCHEMA,
    SAMPLE_SCHEMA,
    TRAINING_SCHEMA_VERSION,
    ShardManifest,
    encode_crop,
    errors_uri,
    sample_table,
    samples_uri,
    write_shard_manifest,
)

__all__ = [
    "AUGMENTS",
    "ProposalConfig",
    "ProposalSpec",
    "make_shards",
    "read_image_rgb",
    "generate_shard",
    "build_proposals_dataset",
    "run_proposals",
]

#: ``--augment`` names → ``models.targets.TrainAugment`` (``dpg`` off: the proposal is the DPG step).
AUGMENTS: dict[str, TrainAugment] = {"none": NO_AUGMENT, "alphapose_1x": ALPHAPOSE_1X_AUGMENT}


@dataclass(frozen=True, kw_only=True)
class ProposalConfig:
    """Everything that decides the samples (hashed into every commit marker) and how they are stored.

    Attributes:
        mode: ``"gt"``, ``"dpg"`` or ``"pgpg"`` (``models.proposals.proposal_sample``).
        proposals_per_person: N samples per person and epoch.
        epochs: samples are made for epochs 0 … epochs − 1 (a new proposal each epoch, as AlphaPose draws one per
            loaded sample).
        seed: the run's seed (``models.proposals.sample_rng``).
        augment: a key of ``AUGMENTS``.
        crop_format: ``"raw"`` (exact) or ``"jpeg"`` (``store.training.encode_crop``); jpeg_quality for the latter.
        images_per_shard: images per shard (one task, one file, one commit marker).
        dpg_variant: ``"train_sppe"`` (RMPE's released DPG) or ``"master"`` (``addDPG``), ``models.proposals``.
        pgpg_model: ``PGPGModel.to_dict()`` as canonical JSON (sorted keys), required for mode ``"pgpg"``.
        min_score, min_keypoint_score: the pseudo-label thresholds (``store.labels.read_raypose_labels``).
        rows_per_group: samples per Parquet row group (bounds a task's memory; does not change the samples).
    """

    mode: str = "dpg"
    proposals_per_person: int = 1
    epochs: int = 1
    seed: int = 0
    augment: str = "alphapose_1x"
    crop_format: str = "raw"
    jpeg_quality: int = 95
    images_per_shard: int = 16
    dpg_variant: str = "train_sppe"
    pgpg_model: str | None = None
    min_score: float = 0.5
    min_keypoint_score: float = 0.5
    rows_per_group: int = 64

    def __post_init__(self) -> None:
        if self.mode not in PROPOSAL_MODES:
            raise ValueError(f"mode must be one of {PROPOSAL_MODES}, got {self.mode!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {tuple(AUGMENTS)}, got {self.augment!r}")
        if self.dpg_variant not in DPG_VARIANTS:
            raise ValueError(f"dpg_variant must be one of {DPG_VARIANTS}, got {self.dpg_variant!r}")
        if self.crop_format not in CROP_FORMATS:
            raise ValueError(f"crop_format must be one of {CROP_FORMATS}, got {self.crop_format!r}")
        for name in ("proposals_per_person", "epochs", "images_per_shard", "rows_per_group"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be an integer ≥ 1, got {getattr(self, name)!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must lie in [1, 100], got {self.jpeg_quality}")
        if (self.mode == "pgpg") != (self.pgpg_model is not None):
            raise ValueError("a PGPG model is needed for mode 'pgpg', and only for it")
        if self.pgpg_model is not None:
            PGPGModel.from_dict(json.loads(self.pgpg_model))  # raises ValueError for a wrong model

    def result_affecting(self) -> dict:
        """The settings that change which samples exist or their bytes (``rows_per_group`` does not)."""
        d = asdict(self)
        d.pop("rows_per_group")
        if self.crop_format != "jpeg":
            d.pop("jpeg_quality")
        d["pgpg_model"] = None if self.pgpg_model is None else hashlib.sha256(self.pgpg_model.encode()).hexdigest()
        d["schema_version"] = TRAINING_SCHEMA_VERSION
        return d

    def config_hash(self) -> str:
        """sha256 (16 hex digits) of ``result_affecting``: what a commit marker must match to be skipped."""
        body = json.dumps(self.result_affecting(), sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:16]


@dataclass(frozen=True)
class ProposalSpec:
    """What every task needs (plain data, pickled to the workers): the config, where to write, and the run."""

    config: ProposalConfig
    output: str
    storage_options: dict
    run_id: str


def make_shards(sources: list[LabelSource], images_per_shard: int) -> list[dict]:
    """Split each source's images into shards of ``images_per_shard`` (in the source's image order).

    Returns plain dicts ``{"shard_id", "source", "shard_hash", "images": [ImageLabels.to_dict(), …]}``; the id is
    ``<source file stem>-<shard index>`` sanitized, plus 8 hex digits of the source URI (``store.sources.sanitize_id``),
    so ids are path-safe and unique across sources.
    """
    shards = []
    for src in sources:
        stem = src.source.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for start in range(0, len(src.images), images_per_shard):
            images = [im.to_dict() for im in src.images[start : start + images_per_shard]]
            body = json.dumps(images, sort_keys=True).encode()
            shards.append(
                {
                    "shard_id": sanitize_id(f"{stem}-{start // images_per_shard:05d}", src.source),
                    "source": src.source,
                    "shard_hash": hashlib.sha256(body).hexdigest()[:16],
                    "images": images,
                }
            )
    return shards


def read_image_rgb(uri: str, storage_options: dict | None = None) -> np.ndarray:
    """An image file (local or fsspec URI) → uint8 ``[H, W, 3]`` RGB in displayed orientation, decoded as
    ``pipelines.decode`` reads image units (``models.images.decode_image``: EXIF orientation applied, as AlphaPose's
    ``cv2.imread``). ValueError for an empty or undecodable file."""
    import fsspec

    from models.images import decode_image

    with fsspec.open(uri, "rb", **(storage_options or {})) as f:
        return decode_image(f.read())


class _Frames:
    """The pixels of a shard's images in shard order: image files read one by one, and each video's wanted frames
    decoded in one forward pass (``pipelines.decode.video_frames``: the labelling job's frames exactly); a frame
    asked for out of order restarts that video's pass."""

    def __init__(self, images: list[ImageLabels], storage_options: dict | None) -> None:
        self.storage_options = storage_options
        self.wanted: dict[str, list[int]] = {}
        for im in images:
            if im.frame_index >= 0:
                self.wanted.setdefault(im.image_uri, []).append(im.frame_index)
        self.streams: dict[str, tuple[object, int]] = {}

    def read(self, im: ImageLabels) -> np.ndarray:
        if im.frame_index < 0:
            return read_image_rgb(im.image_uri, self.storage_options)
        from pipelines.decode import video_frames

        stream, last = self.streams.get(im.image_uri, (None, None))
        if stream is None or last is None or im.frame_index <= last:
            rest = [i for i in self.wanted[im.image_uri] if i >= im.frame_index]
            stream = video_frames(im.image_uri, rest, self.storage_options)
        for i, frame in stream:
            self.streams[im.image_uri] = (stream, i)
            if i == im.frame_index:
                if isinstance(frame, str):
                    raise ValueError(f"frame {i}: {frame}")
                return frame
        self.streams.pop(im.image_uri, None)
        raise ValueError(f"frame {im.frame_index} was not decoded")


def _sample_id(im: ImageLabels, person_index: int, epoch: int, k: int) -> str:
    base = sanitize_id(str(im.image_id), f"{im.source}|{im.image_id}", max_len=48)
    return f"{base}-p{person_index}-e{epoch}-n{k}"


def _error(im: ImageLabels, message: str) -> dict:
    return {"source": im.source, "image_id": str(im.image_id), "image_uri": im.image_uri, "error": message[:500]}


def _samples_of_image(image: np.ndarray, im: ImageLabels, cfg: ProposalConfig, pgpg: PGPGModel | None, errors: list):
    """Yield the sample rows of one image (persons × epochs × proposals), appending error rows for bad persons."""
    aug = AUGMENTS[cfg.augment]
    flip_pairs = KEYPOINT_SETS[im.keypoint_set].flip_pairs
    out_h, out_w = aug.crop.output_size_hw
    k_joints = im.keypoints.shape[1]
    for p in range(im.num_persons):
        pi = int(im.person_index[p])
        score = None if np.isnan(im.label_score[p]) else float(im.label_score[p])
        failed = False
        for epoch in range(cfg.epochs):
            if failed:
                break
            for k in range(cfg.proposals_per_person):
                rng = sample_rng(cfg.seed, epoch, im.image_id, pi, k)
                try:
                    s = proposal_sample(
                        image,
                        im.boxes_xyxy[p],
                        im.keypoints[p],
                        im.visible[p],
                        rng,
                        mode=cfg.mode,
                        aug=aug,
                        flip_pairs=flip_pairs,
                        pgpg_model=pgpg,
                        dpg_variant=cfg.dpg_variant,
                    )
                except ValueError as e:  # a label that cannot make a proposal (a box without area)
                    errors.append(_error(im, f"person {pi}: {e}"))
                    failed = True  # no more samples of this person
                    break
                others = np.arange(im.num_persons) != p
                ixy, itypes = crop_interference(
                    s.image_to_crop, s.flipped, im.keypoints[others], im.visible[others], flip_pairs, (out_h, out_w)
                )
                yield {
                    "sample_id": _sample_id(im, pi, epoch, k),
                    "source": im.source,
                    "image_id": str(im.image_id),
                    "image_uri": im.image_uri,
                    "person_index": pi,
                    "epoch": epoch,
                    "proposal_index": k,
                    "seed": cfg.seed,
                    "label_kind": im.label_kind,
                    "label_score": score,
                    "gt_box_xyxy": im.boxes_xyxy[p],
                    "proposal_box_xyxy": s.proposal_box_xyxy,
                    "branch": s.branch,
                    "truncation": s.truncation,
                    "atom": s.atom,
                    "empty": s.empty,
                    "crop": encode_crop(s.crop, cfg.crop_format, cfg.jpeg_quality),
                    "crop_format": cfg.crop_format,
                    "crop_height": out_h,
                    "crop_width": out_w,
                    "image_to_crop": s.image_to_crop,
                    "flipped": s.flipped,
                    "keypoints": s.keypoints,
                    "target_weight": s.target_weight,
                    "num_joints": k_joints,
                    "interference_keypoints": ixy,
                    "interference_types": itypes,
                }


def generate_shard(shard: dict, spec: ProposalSpec) -> dict:
    """Make and publish one shard: samples, errors, then the commit marker. Returns its summary row.

    Runs in a Ray task (``build_proposals_dataset``) or in plain Python (tests, ``benchmarks.proposals``).
    """
    import cv2
    import pyarrow as pa

    from store.writers import AtomicParquetWriter, write_table_atomic

    cv2.setNumThreads(1)  # one task per core: OpenCV's own threads would only compete with the other tasks
    t0 = time.perf_counter()
    cfg = spec.config
    pgpg = PGPGModel.from_dict(json.loads(cfg.pgpg_model)) if cfg.pgpg_model is not None else None
    images = [ImageLabels.from_dict(d) for d in shard["images"]]
    metadata = {
        "raypose.training_schema_version": TRAINING_SCHEMA_VERSION,
        "raypose.config": json.dumps(cfg.result_affecting(), sort_keys=True),
        "raypose.run_id": spec.run_id,
    }
    schema = SAMPLE_SCHEMA.with_metadata(metadata)
    s_uri, e_uri = samples_uri(spec.output, shard["shard_id"]), errors_uri(spec.output, shard["shard_id"])
    errors: list[dict] = []
    n_samples = n_persons = 0
    frames = _Frames(images, spec.storage_options)
    with AtomicParquetWriter(s_uri, schema, spec.storage_options) as writer:
        rows: list[dict] = []
        for im in images:
            try:
                image = frames.read(im)
                if im.width and im.height and image.shape[:2] != (im.height, im.width):
                    raise ValueError(
                        f"decoded {image.shape[1]}×{image.shape[0]}, but the labels are for {im.width}×{im.height}"
                    )
            except Exception as e:  # noqa: BLE001 - one bad image is one error row; the shard goes on
                errors.append(_error(im, f"{type(e).__name__}: {e}"))
                continue
            n_persons += im.num_persons
            for row in _samples_of_image(image, im, cfg, pgpg, errors):
                rows.append(row)
                if len(rows) >= cfg.rows_per_group:
                    writer.write(sample_table(rows).replace_schema_metadata(metadata))
                    n_samples += len(rows)
                    rows = []
            del image
        if rows:
            writer.write(sample_table(rows).replace_schema_metadata(metadata))
            n_samples += len(rows)
        writer.commit()
    err_table = pa.Table.from_pylist(errors, schema=SAMPLE_ERRORS_SCHEMA)
    write_table_atomic(err_table, e_uri, spec.storage_options)  # always, possibly empty: no stale errors survive
    write_shard_manifest(
        spec.output,
        ShardManifest(
            shard_id=shard["shard_id"],
            source=shard["source"],
            config_hash=cfg.config_hash(),
            shard_hash=shard["shard_hash"],
            run_id=spec.run_id,
            num_images=len(images),
            num_persons=n_persons,
            num_samples=n_samples,
            num_errors=len(errors),
            files=(s_uri, e_uri),
        ),
        spec.storage_options,
    )
    return {
        "shard_id": shard["shard_id"],
        "num_images": len(images),
        "num_persons": n_persons,
        "num_samples": n_samples,
        "num_errors": len(errors),
        "seconds": time.perf_counter() - t0,
    }


def _generate_batch(batch: dict, spec: ProposalSpec) -> dict:
    """Ray Data adapter: a batch of ``shard_json`` rows → one summary row per shard."""
    out = [generate_shard(json.loads(s), spec) for s in batch["shard_json"]]
    return {k: np.array([r[k] for r in out]) for k in out[0]}


def build_proposals_dataset(shards: list[dict], spec: ProposalSpec, num_cpus: float = 1.0):
    """The lazy Dataset: one row per shard in, one summary row per shard out (CPU tasks of ``num_cpus`` each)."""
    import ray.data

    ds = ray.data.from_items([{"shard_json": json.dumps(s)} for s in shards], override_num_blocks=max(1, len(shards)))
    return ds.map_batches(_generate_batch, batch_size=1, num_cpus=num_cpus, fn_kwargs={"spec": spec})


def run_proposals(shards: list[dict], spec: ProposalSpec, num_cpus: float = 1.0) -> list[dict]:
    """Generate ``shards`` on the current Ray cluster; their summary rows, sorted by shard id."""
    if not shards:
        return []
    rows = build_proposals_dataset(shards, spec, num_cpus).take_all()
    out = [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in rows]
    return sorted(out, key=lambda r: r["shard_id"])
