"""Write SPPE training samples (RMPE proposals, AlphaPose augmentations, crops) as Parquet shards, on Ray Data.

    python -m jobs.proposals --gt person_keypoints.json --images DIR_OR_URI [--gt more.json --images DIR2 ...]
                             [--labels RAYPOSE_OUT --min-score 0.5 --min-keypoint-score 0.5 --video-frame-stride 1]
                             --out OUT --mode gt|dpg|pgpg [--pgpg pgpg.json]
                             [--proposals-per-person 1] [--epochs 1] [--seed 0]
                             [--augment none|alphapose_1x] [--crop-format raw|jpeg]
                             [--images-per-shard 16] [--num-cpus C] [--dpg master]

RMPE (Fang et al., "RMPE: Regional Multi-person Pose Estimation", ICCV 2017) trains the SPPE on proposals that look
like detector boxes. For every labelled person this job makes ``--proposals-per-person`` samples per epoch
(``--epochs``): a proposal box (``--mode gt``: the annotation's box; ``dpg``: AlphaPose's released DPG,
``generateSampleBox`` of ``train_sppe/src/utils/pose.py``, or ``--dpg master`` for ``addDPG`` of
``alphapose/utils/transforms.py``; ``pgpg``: the paper's pose-guided generator fitted by ``jobs.fit_pgpg``), then
AlphaPose's ``SimpleTransform`` augmentations (``--augment``), the 256×192 crop and its keypoints in crop pixels
(``models.proposals.proposal_sample``). Samples are deterministic per (image, person, epoch, proposal, seed).
``--dpg train_sppe`` (default) keeps RMPE's released pre-enlargement and truncation, under SimpleTransform's ×1.25;
``--dpg master`` is AlphaPose's current training pipeline exactly (``addDPG`` on the raw box, then SimpleTransform).

Labels: COCO keypoint files (``--gt``, each with the folder or URI prefix of its images, ``--images``; local or any
fsspec URI, ``s3://`` included) and/or ``jobs.label`` outputs as pseudo-labels (``--labels``: persons with
``pose_score ≥ --min-score``, joints with score ``≥ --min-keypoint-score``; image units and video frames, every
``--video-frame-stride``-th frame of a video, decoded exactly as the labelling job decoded it). All sources must share
one keypoint set.

Output (``store.training``): ``OUT/samples/shard=<id>/part-0.parquet``, ``OUT/errors/shard=<id>/part-0.parquet``
(images that could not be read; the rest of the shard is kept), ``OUT/_manifest/<id>.json`` (commit markers) and
``OUT/summary.json``. A rerun skips shards whose marker matches the config and the shard's labels, so an interrupted
run resumes; an output written with another config is refused (use a new ``--out``).

Everything (arguments, label files, the PGPG model, the output location) is checked before Ray starts: exit 2 with
the reason. Exit 0 when the run finished (bad images are counted in the summary), 1 when it failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid

from jobs.ray_init import init_ray, run_interruptible

__all__ = ["main"]

logger = logging.getLogger("raypose.jobs.proposals")


class UsageError(ValueError):
    """A bad argument or input (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.proposals", description=__doc__.split("\n\n")[0])
    p.add_argument("--gt", action="append", default=[], help="COCO keypoints annotation file (repeatable)")
    p.add_argument("--images", action="append", default=[], help="folder / URI prefix of each --gt's images")
    p.add_argument("--labels", action="append", default=[], help="a jobs.label output folder: pseudo-labels")
    p.add_argument("--min-score", type=float, default=0.5, help="pseudo-labels: least person pose_score")
    p.add_argument("--min-keypoint-score", type=float, default=0.5, help="pseudo-labels: least joint score")
    p.add_argument(
        "--video-frame-stride", type=int, default=1, help="pseudo-labels: every n-th frame of a video (default all)"
    )
    p.add_argument("--out", required=True, help="output folder or fsspec URI")
    p.add_argument("--mode", choices=("gt", "dpg", "pgpg"), default="dpg")
    p.add_argument("--pgpg", help="PGPG model JSON (jobs.fit_pgpg), for --mode pgpg")
    p.add_argument(
        "--dpg", choices=("train_sppe", "master"), default="train_sppe", help="DPG variant (see the module doc)"
    )
    p.add_argument("--proposals-per-person", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", choices=("none", "alphapose_1x"), default="alphapose_1x")
    p.add_argument("--crop-format", choices=("raw", "jpeg"), default="raw")
    p.add_argument("--images-per-shard", type=int, default=16)
    p.add_argument("--num-cpus", type=int, default=None, help="local Ray's CPUs (ignored under RAY_ADDRESS)")
    return p


def _load_pgpg(uri: str) -> str:
    """The model of a ``jobs.fit_pgpg`` file (or a bare ``PGPGModel.to_dict``) as canonical JSON."""
    import fsspec

    from models.pgpg import PGPGModel

    try:
        with fsspec.open(uri, "rt") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"--pgpg {uri}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"--pgpg {uri}: not a readable JSON file ({e})") from None
    model = doc.get("model", doc) if isinstance(doc, dict) else doc
    try:
        PGPGModel.from_dict(model)
    except (ValueError, TypeError, KeyError) as e:
        raise UsageError(f"--pgpg {uri}: not a PGPG model ({type(e).__name__}: {e})") from None
    return json.dumps(model, sort_keys=True)


def _check_folder(uri: str, what: str) -> None:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
        ok = fs.isdir(path) or bool(fs.ls(path, detail=False))
    except (ValueError, ImportError) as e:
        raise UsageError(f"{what} {uri}: unusable location ({e})") from None
    except (FileNotFoundError, OSError):
        ok = False
    if not ok:
        raise UsageError(f"{what} {uri}: no such folder")


def _check_output(uri: str) -> dict:
    """The output must be writable; returns its commit markers (empty for a new output)."""
    import fsspec

    from store.training import read_shard_manifests

    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ValueError, ImportError) as e:
        raise UsageError(f"--out {uri}: unusable location ({e})") from None
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"--out {uri}: exists and is not a folder")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out {uri}: cannot create ({e})") from None
        if not os.access(path, os.W_OK):
            raise UsageError(f"--out {uri}: not writable")
    return read_shard_manifests(uri)


def _config(args) -> tuple:
    """Arguments → (ProposalConfig, label sources); UsageError for anything wrong."""
    from pipelines.proposals import ProposalConfig
    from store.labels import LabelError, read_coco_labels, read_raypose_labels

    if not args.gt and not args.labels:
        raise UsageError("no labels: give --gt FILE --images DIR (repeatable) and/or --labels RAYPOSE_OUT")
    if len(args.gt) != len(args.images):
        raise UsageError(f"{len(args.gt)} --gt but {len(args.images)} --images: give one image folder per --gt")
    if (args.mode == "pgpg") != (args.pgpg is not None):
        raise UsageError("--pgpg MODEL.json is required with --mode pgpg, and only there")
    for name in ("proposals_per_person", "epochs", "images_per_shard"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be ≥ 1")
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed}: must be ≥ 0")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError(f"--num-cpus {args.num_cpus}: must be ≥ 1")
    pgpg = _load_pgpg(args.pgpg) if args.pgpg else None
    try:
        cfg = ProposalConfig(
            mode=args.mode,
            proposals_per_person=args.proposals_per_person,
            epochs=args.epochs,
            seed=args.seed,
            augment=args.augment,
            crop_format=args.crop_format,
            images_per_shard=args.images_per_shard,
            dpg_variant=args.dpg,
            pgpg_model=pgpg,
            min_score=args.min_score,
            min_keypoint_score=args.min_keypoint_score,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    sources = []
    try:
        for gt, images in zip(args.gt, args.images):
            _check_folder(images, "--images")
            sources.append(read_coco_labels(gt, images))
        for folder in args.labels:
            sources.append(
                read_raypose_labels(
                    folder,
                    min_score=args.min_score,
                    min_keypoint_score=args.min_keypoint_score,
                    video_frame_stride=args.video_frame_stride,
                )
            )
    except LabelError as e:
        raise UsageError(str(e)) from None
    sets = sorted({s.keypoint_set for s in sources})
    if len(sets) > 1:
        raise UsageError(f"the label sources have different keypoint sets {sets}: write one set per output")
    if len({s.source for s in sources}) != len(sources):
        raise UsageError("a label source is given twice")
    return cfg, sources


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg, sources = _config(args)
        markers = _check_output(args.out)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from pipelines.proposals import ProposalSpec, make_shards, run_proposals

    config_hash = cfg.config_hash()
    foreign = sorted({m.config_hash for m in markers.values()} - {config_hash})
    if foreign:
        print(
            f"error: --out {args.out} holds shards written with another config (hash {', '.join(foreign)}; this run: "
            f"{config_hash}); use a new --out, or rerun with the same arguments to resume",
            file=sys.stderr,
        )
        return 2
    shards = make_shards(sources, cfg.images_per_shard)
    todo = [s for s in shards if not _committed(markers.get(s["shard_id"]), config_hash, s["shard_hash"])]
    skipped = len(shards) - len(todo)
    run_id = uuid.uuid4().hex[:12]
    spec = ProposalSpec(config=cfg, output=args.out, storage_options={}, run_id=run_id)
    logger.info(
        "run %s: %d shards (%d already committed), %d persons, config %s",
        run_id,
        len(shards),
        skipped,
        sum(s.num_persons for s in sources),
        config_hash,
    )
    t0 = time.perf_counter()
    rows = []
    if todo:
        try:
            init_ray(args.num_cpus)
            from pipelines.label import configure_data_context

            configure_data_context()
            rows = run_proposals(todo, spec)
        except Exception:
            logger.exception("run %s failed", run_id)
            return 1
    seconds = time.perf_counter() - t0
    summary = {
        "run_id": run_id,
        "config": cfg.result_affecting(),
        "config_hash": config_hash,
        "sources": [
            {"source": s.source, "kind": s.kind, "images": len(s.images), "skipped": s.skipped} for s in sources
        ],
        "keypoint_set": sources[0].keypoint_set,
        "shards": len(shards),
        "shards_written": len(rows),
        "shards_skipped": skipped,
        "samples": sum(r["num_samples"] for r in rows),
        "errors": sum(r["num_errors"] for r in rows),
        "seconds": seconds,
    }
    from store.writers import join_uri, put_atomic

    put_atomic(json.dumps(summary, indent=1, sort_keys=True).encode(), join_uri(args.out, "summary.json"))
    print(
        f"proposals: {summary['samples']} samples in {len(rows)} shards written, {skipped} shards skipped "
        f"(committed), {summary['errors']} errors, {seconds:.1f} s; output {args.out}"
    )
    return 0


def _committed(marker, config_hash: str, shard_hash: str) -> bool:
    return marker is not None and marker.config_hash == config_hash and marker.shard_hash == shard_hash


INTERRUPTED = "interrupted: committed shards are kept; rerun the same command to resume"


def _cli() -> int:
    """``python -m jobs.proposals``: :func:`main`; a Ctrl-C prints one line and exits 130
    (``jobs.ray_init.run_interruptible``)."""
    return run_interruptible(main, INTERRUPTED)


if __name__ == "__main__":
    sys.exit(_cli())
