"""Label videos and images: Parquet keypoint tables per video, resumable, exactly once.

    python -m jobs.label --input URI [URI ...] --output URI [--config FILE] [--set section.key=value ...]
                         [--run-id ID] [--num-cpus N]

Runs on local Ray (started here, CPU) or, under ``ray job submit`` / with ``RAY_ADDRESS`` set, on that cluster.
Everything is validated before Ray starts: config keys and ranges, inputs (listed, fingerprinted), the output
location, and checkpoints (read and hashed). Committed videos whose marker matches the current config hash and
input fingerprint are skipped; the rest run in chunks of ``run.chunk_units`` videos, each chunk one Dataset
execution, so a crash loses at most one chunk.

Outputs under ``--output``: ``poses/`` and ``frames/`` (hive-partitioned by ``video_id``), ``_manifest/``, and
``runs/<run_id>/summary.json`` + ``errors.parquet``; ``_staging/`` holds per-frame rows between the GPU stages and
the per-video tracking stage, and each video's part is deleted once the video is committed.
Exit codes: 0 done (bad inputs are counted in the summary),
2 usage/config error, 1 the run failed.

Example configuration (YAML; every key optional except what the detector and SPPE need)::

    detector: {arch: fasterrcnn_resnet50_fpn_v2, weights: /ckpt/frcnn.pth}
    sppe: {arch: fastpose_res50, checkpoint: /ckpt/fast_res50_256x192.pth, flip_test: true}
    resources: {detect: {num_gpus: 0.5, actors: 2, batch_size: 16}, sppe: {num_gpus: 0.5, actors: 2}}

With the real weights of ``make weights`` (``configs/demo.yaml``)::

    detector: {arch: yolo, weights: weights/yolo11n-pose.pt}      # Ultralytics, AGPL-3.0
    sppe: {arch: blazepose_full}                                  # MediaPipe, Apache-2.0; or arch: detector
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import uuid

__all__ = ["main", "build_config"]

logger = logging.getLogger("raypose.label")

RANDOM_BANNER = (
    "RANDOM WEIGHTS: no checkpoint was given for {what}. The keypoints written by this run are NOT pose "
    "estimates; they only exercise the pipeline. Every output table and the summary are marked random_weights."
)


def build_config(config_file: str | None, overrides: list[str]):
    """Effective ``LabelConfig`` from an optional YAML file plus ``--set`` overrides (strict)."""
    from pipelines.configs import apply_overrides, from_mapping, load_yaml
    from pipelines.label import LabelConfig

    data = load_yaml(config_file) if config_file else {}
    data = apply_overrides(data, overrides)
    det = data.setdefault("detector", {})
    det.setdefault("key_column", "frame_key")  # how precomputed detections find a frame's boxes
    data.setdefault("sppe", {})
    return from_mapping(LabelConfig, data)


def _resolve_weights(cfg):
    """Pin BlazePose's default weights file (the driver's ``RAYPOSE_WEIGHTS_DIR`` or ``weights/``) into the config, so
    every actor, on any node, opens the file the driver checked; on a cluster point the folder at shared storage
    (``RAYPOSE_WEIGHTS_DIR=s3://…``) or set ``sppe.checkpoint``."""
    import dataclasses

    if cfg.sppe.arch == "blazepose_full" and cfg.sppe.checkpoint is None:
        return dataclasses.replace(cfg, sppe=dataclasses.replace(cfg.sppe, checkpoint=cfg.sppe.weights_path()))
    return cfg


def _sppe_digest(sppe, det_sha: str) -> str:
    """sha256 of the pose network's weights, read as the actor will (weights-only, so an unsafe, corrupt or missing
    file fails here), "random", or the detector's for ``sppe.arch=detector``."""
    if sppe.arch == "detector":
        return det_sha
    path = sppe.weights_path()  # BlazePose: the fetched file; a missing one names `make weights`
    if path is None:
        return "random"
    if sppe.arch == "blazepose_full":
        from actors.sppe import load_blazepose

        return load_blazepose(path)[1]
    from models.checkpoints import read_state_dict

    return read_state_dict(path)[1]


def _detector_digest(det) -> str:
    """What identifies the detector's weights before any actor starts: the detections file's or checkpoint's
    sha256 (the file is parsed, so a bad one fails here), "random", or "torchvision" (the actor records the hash
    of the file it loads in every output row)."""
    if det.random_weights:
        return "random"
    if det.arch == "precomputed":
        from models.detections_io import load_detections

        return load_detections(det.weights).sha256
    if det.weights == "torchvision":
        return "torchvision"
    if det.arch == "yolo":  # Ultralytics .pt: read by the restricted unpickler (nothing in it runs)
        from models.ultralytics import read_ultralytics_checkpoint

        return read_ultralytics_checkpoint(det.weights).sha256
    if str(det.weights).endswith(".weights"):  # darknet: parsed by the actor; hash the bytes here
        import fsspec

        with fsspec.open(det.weights, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    from models.checkpoints import read_state_dict

    return read_state_dict(det.weights)[1]


def _check_output(output: str, storage_options: dict) -> None:
    import fsspec

    from store.writers import join_uri, put_atomic

    probe = join_uri(output, "runs", f".write-check-{uuid.uuid4().hex}")
    put_atomic(b"ok", probe, storage_options)
    fs, path = fsspec.core.url_to_fs(probe, **storage_options)
    fs.rm(path)


def _storage_options() -> dict:
    """fsspec options for every read and write. Empty: S3 endpoint and credentials come from the standard AWS
    environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` …, or the instance role), which Ray workers inherit,
    so no secret ever passes through config, task arguments or logs."""
    return {}


def _init_ray(num_cpus: int | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level="WARNING")  # under ray job submit: never pass resources to an existing cluster
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.label", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", nargs="+", required=True, help="videos, image folders, globs, URI lists")
    parser.add_argument("--output", required=True, help="output folder or s3:// prefix")
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set sppe.arch=fastpose_res18 (repeatable)",
    )
    parser.add_argument("--run-id", help="id of this run (default: time + random suffix)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray started here (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from pipelines.configs import ConfigError, config_hash, to_dict
    from store.sources import InputError, list_inputs

    # ---- validate everything before any work starts -------------------------------------------------------------
    storage_options = _storage_options()
    try:
        cfg = build_config(args.config, args.overrides)
        units = list_inputs(args.input, storage_options)
        if not units:
            raise InputError(f"no videos or images found under {' '.join(args.input)}")
        cfg = _resolve_weights(cfg)
        det_sha = _detector_digest(cfg.detector)
        sppe_sha = _sppe_digest(cfg.sppe, det_sha)
        _check_output(args.output, storage_options)
    except (ConfigError, InputError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    random_weights = sppe_sha == "random" or det_sha == "random"
    for what, sha in (("the SPPE", sppe_sha), ("the detector", det_sha)):
        if sha == "random":
            logger.warning(RANDOM_BANNER.format(what=what))
    effective = to_dict(cfg)
    chash = config_hash(
        {"config": cfg.result_affecting(), "detector_sha256": det_sha, "sppe_sha256": sppe_sha, "code": _code_version()}
    )
    run_id = args.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]

    import ray

    from actors.publish import PublishSpec
    from pipelines.label import build_label_dataset, configure_data_context, probe_units
    from store.manifest import read_manifests

    committed = read_manifests(args.output, storage_options)
    todo = [
        u
        for u in units
        if not (
            u.video_id in committed
            and committed[u.video_id].config_hash == chash
            and committed[u.video_id].fingerprint == u.fingerprint
        )
    ]
    logger.info(
        "%d inputs, %d already committed with this config, %d to process (run %s)",
        len(units),
        len(units) - len(todo),
        len(todo),
        run_id,
    )

    t_start = time.perf_counter()
    summaries: list[dict] = []
    try:
        _init_ray(args.num_cpus)
        configure_data_context()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        for c in range(0, len(todo), cfg.run.chunk_units):
            chunk = todo[c : c + cfg.run.chunk_units]
            shards = probe_units(chunk, cfg, storage_options)
            spec = PublishSpec(
                output=args.output,
                run_id=run_id,
                config_hash=chash,
                fingerprints={u.video_id: u.fingerprint for u in chunk},
                keypoint_set=cfg.sppe.keypoint_set,
                sppe=cfg.sppe.arch,
                sppe_sha256=sppe_sha,
                random_weights=random_weights,
                config=effective,
                storage_options=storage_options,
                tracking=cfg.tracking.poseflow if cfg.tracking.enabled else None,
            )
            parts = cfg.run.num_partitions or max(1, min(len(chunk), 4 * cpus))
            ds = build_label_dataset(shards, cfg, spec, num_partitions=parts)
            summaries += ds.take_all()
            logger.info(
                "chunk %d/%d done: %d videos",
                c // cfg.run.chunk_units + 1,
                -(-len(todo) // cfg.run.chunk_units),
                len(chunk),
            )
    except Exception:
        logger.exception("run %s failed; committed videos are kept and a rerun resumes after them", run_id)
        return 1
    elapsed = time.perf_counter() - t_start

    summary = _write_run_outputs(
        args,
        run_id,
        chash,
        effective,
        units,
        todo,
        summaries,
        elapsed,
        random_weights,
        det_sha,
        sppe_sha,
        storage_options,
    )
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "run_id",
                    "inputs",
                    "processed",
                    "published",
                    "frames",
                    "persons",
                    "errors",
                    "frames_per_s",
                    "random_weights",
                )
            },
            indent=1,
        )
    )
    print(f"outputs: {args.output}/poses, {args.output}/frames; run summary: {summary['summary_uri']}")
    for stage, p in summary["weights"]["provenance"].items():
        if p["source"]:
            print(f"{stage} weights: {p['attribution']} [{p['licence']}] from {p['source']}")
    if random_weights:
        print("NOTE: random weights were used: the keypoints are not pose estimates.")
    return 0


def weights_provenance(det_sha: str, sppe_sha: str) -> dict:
    """Where known weights came from and under what licence (``models.zoo``), by stage; unknown files are the
    user's own checkpoints."""
    from models.zoo import REGISTRY_WEIGHTS

    by_sha = {w.member_sha256: w for w in REGISTRY_WEIGHTS.values()}
    out = {}
    for stage, sha in (("detector", det_sha), ("sppe", sppe_sha)):
        w = by_sha.get(sha)
        out[stage] = (
            {"attribution": w.attribution, "licence": w.licence, "source": f"{w.package}=={w.version}:{w.member}"}
            if w
            else {
                "attribution": "random weights" if sha == "random" else "user checkpoint",
                "licence": "",
                "source": "",
            }
        )
    return out


def _code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("raypose")
    except PackageNotFoundError:
        return "unknown"


def _write_run_outputs(
    args, run_id, chash, effective, units, todo, summaries, elapsed, random_weights, det_sha, sppe_sha, storage_options
) -> dict:
    import pyarrow as pa

    from store.writers import join_uri, put_atomic, write_table_atomic

    errors = [e for s in summaries for e in json.loads(s["errors_json"])]
    seen = {s["video_id"] for s in summaries}
    for u in todo:  # a video that produced no summary at all is an error too, never silently dropped
        if u.video_id not in seen:
            errors.append(
                {
                    "video_id": u.video_id,
                    "source_uri": u.source_uri,
                    "shard_index": -1,
                    "frame_index": -1,
                    "stage": "pipeline",
                    "message": "no result returned for this input",
                }
            )
    stage_seconds: dict[str, float] = {}
    for s in summaries:
        for k, v in json.loads(s["stage_seconds_json"]).items():
            stage_seconds[k] = stage_seconds.get(k, 0.0) + v
    frames = int(sum(s["num_frames"] for s in summaries))
    run_dir = join_uri(args.output, "runs", run_id)
    err_table = pa.Table.from_pylist(
        errors,
        schema=pa.schema(
            [
                ("video_id", pa.string()),
                ("source_uri", pa.string()),
                ("shard_index", pa.int64()),
                ("frame_index", pa.int64()),
                ("stage", pa.string()),
                ("message", pa.string()),
            ]
        ),
    )
    write_table_atomic(err_table, join_uri(run_dir, "errors.parquet"), storage_options)
    summary = {
        "run_id": run_id,
        "config_hash": chash,
        "inputs": len(units),
        "skipped_committed": len(units) - len(todo),
        "processed": len(todo),
        "published": int(sum(bool(s["published"]) for s in summaries)),
        "frames": frames,
        "persons": int(sum(s["num_persons"] for s in summaries)),
        "errors": len(errors),
        "wall_seconds": elapsed,
        "frames_per_s": frames / elapsed if elapsed > 0 else 0.0,
        "stage_seconds": stage_seconds,
        "random_weights": random_weights,
        "weights": {
            "detector": effective["detector"]["arch"],
            "detector_sha256": det_sha,
            "sppe": effective["sppe"]["arch"],
            "sppe_sha256": sppe_sha,
            "provenance": weights_provenance(det_sha, sppe_sha),
        },
        "config": effective,
        "summary_uri": join_uri(run_dir, "summary.json"),
    }
    put_atomic(json.dumps(summary, indent=1).encode(), summary["summary_uri"], storage_options)
    return summary


if __name__ == "__main__":
    sys.exit(main())
