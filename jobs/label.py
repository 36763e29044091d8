"""Label videos and images: Parquet keypoint tables per video, resumable, exactly once.

    python -m jobs.label --input URI [URI ...] --output URI [--config FILE] [--set section.key=value ...]
                         [--exact] [--run-id ID] [--num-cpus N] [--break-lease] [--lease-ttl-s S]

Runs on local Ray (started here, CPU) or, under ``ray job submit`` / with ``RAY_ADDRESS`` set, on that cluster.
Everything is validated before Ray starts: config keys and ranges, the resources against the local Ray's CPUs,
the storage locations (fsspec package, credentials, reachability), inputs (listed, fingerprinted), the output
location, and checkpoints (read and hashed); on a Ray it connects to, the resources are checked once connected,
before any Dataset is built. A chunk that finishes nothing for ``run.stall_warning_s`` logs a warning.
Committed videos whose marker matches the current config hash and input fingerprint are skipped; the rest run in
chunks of ``run.chunk_units`` videos, each chunk one Dataset execution, so a crash loses at most one chunk.

Precision: ``sppe.precision`` defaults to ``auto``: a heatmap SPPE (FastPose …) runs its trunk in bf16 on CPUs that
compute bf16 in hardware (AVX512-BF16/AMX; the heatmap layer stays fp32), fp32 elsewhere and for BlazePose
(``models.precision``); resolved here, before the config is hashed, and recorded in the run summary. ``--exact`` runs
fp32 networks, whose outputs equal AlphaPose's given the same weights and boxes.

Outputs under ``--output``: ``poses/`` and ``frames/`` (hive-partitioned by ``video_id``), ``_manifest/``, and
``runs/<run_id>/summary.json`` + ``errors.parquet``; ``_staging/`` holds per-frame rows between the GPU stages and
the per-video tracking stage, and each video's part is deleted once the video is committed.
One run at a time per output: the run takes the output's lease (``<output>/_lease/``, ``store.lease``) after
validation and before it writes anything there (its candidate file before Ray starts, held once Ray is up: the
lease's settle time overlaps Ray's start-up), renews it while it works and releases it when it ends; a second run
into the same output is refused (exit 2) while the first one's lease is live, and takes over a stale one (a crashed
run's) with a warning. ``--break-lease`` takes it from a run known to be dead.

Exit codes:

* 0: done; every input was processed, and bad inputs (corrupt media, undecodable frames, failed probes) are
  error rows of kind ``input`` in ``errors.parquet``.
* 1: the run crashed (a bug, or a failure it could not attribute); committed videos are kept.
* 2: usage, config or storage error before any work, or the output is in use by another live run (its lease).
* 3: infrastructure failure: some videos were not published because of I/O errors writing outputs or staging (a
  full disk, a lost object store), memory, dead workers or Ray failures, or a lost lease (error rows of kind
  ``infrastructure``); everything else is published and a rerun resumes with the rest.
* 130: interrupted (Ctrl-C): one line on stderr, Ray shut down; committed videos are kept, the same command resumes.

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
import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
import uuid

from jobs.ray_init import EXIT_INTERRUPTED, adopt_orphans, exit_process, init_ray, run_interruptible, shutdown_ray

__all__ = ["main", "build_config", "StallWatchdog"]

#: Set by the first Ctrl-C (SIGINT) of ``python -m jobs.label``. The KeyboardInterrupt it raises can be swallowed
#: inside library code running in the main thread; the chunk loop checks this too, so a Ctrl-C is never lost.
INTERRUPT = threading.Event()

logger = logging.getLogger("raypose.label")

RANDOM_BANNER = (
    "RANDOM WEIGHTS: no checkpoint was given for {what}. The keypoints written by this run are NOT pose "
    "estimates; they only exercise the pipeline. Every output table and the summary are marked random_weights."
)


def build_config(config_file: str | None, overrides: list[str]):
    """Effective ``LabelConfig`` from an optional YAML file plus ``--set`` overrides (strict), with ``precision:
    auto`` resolved for this machine (``LabelConfig.resolved``)."""
    from pipelines.configs import apply_overrides, from_mapping, load_yaml
    from pipelines.label import LabelConfig

    data = load_yaml(config_file) if config_file else {}
    data = apply_overrides(data, overrides)
    det = data.setdefault("detector", {})
    det.setdefault("key_column", "frame_key")  # how precomputed detections find a frame's boxes
    data.setdefault("sppe", {})
    if data["sppe"].get("alphapose_config"):
        _apply_alphapose_config(data)
    cfg = from_mapping(LabelConfig, data)
    resolved = cfg.resolved()
    if cfg.sppe.precision != resolved.sppe.precision:
        logger.info(
            "sppe.precision=auto: %s on this machine (models.precision; --exact runs fp32)", resolved.sppe.precision
        )
    return resolved


def _exact_overrides(overrides: list[str]) -> list[str]:
    """The ``--set`` values ``--exact`` adds (fp32 for both networks); a contradicting ``--set`` is an error."""
    from pipelines.configs import ConfigError

    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() in ("sppe.precision", "detector.precision") and value.strip() != "fp32":
            raise ConfigError(f"--exact runs fp32 networks, but --set {o.strip()} asks for another precision")
    return ["sppe.precision=fp32", "detector.precision=fp32"]


def _apply_alphapose_config(data: dict) -> None:
    """Fill ``sppe.arch``, ``num_joints``, ``keypoint_set`` and ``decode`` from ``sppe.alphapose_config`` (what the
    AlphaPose YAML builds, ``models.alphapose_config``), and AlphaPose's whole-body regression constants for pose NMS
    when the model calls for them and ``pose_nms`` is not given. A contradicting explicit setting is an error;
    ``decode: dark`` may refine a heatmap model."""
    import dataclasses

    from models.alphapose_config import read_alphapose_config
    from models.pose_nms import WHOLEBODY_REGRESSION_PARAMS
    from pipelines.configs import ConfigError

    sppe = data["sppe"]
    try:
        spec = read_alphapose_config(str(sppe["alphapose_config"]))
    except ValueError as e:
        raise ConfigError(f"sppe.alphapose_config: {e}") from None
    for key, value in (
        ("arch", spec.arch),
        ("num_joints", spec.num_joints),
        ("keypoint_set", spec.keypoint_set),
        ("decode", spec.decode),
    ):
        given = sppe.get(key)
        if given is not None and given != value and not (key == "decode" and given == "dark" and value == "alphapose"):
            raise ConfigError(f"sppe.{key}={given!r} contradicts sppe.alphapose_config {spec.source} ({value!r})")
        sppe.setdefault(key, value)
    if spec.regression_pose_nms and "pose_nms" not in data:
        data["pose_nms"] = dataclasses.asdict(WHOLEBODY_REGRESSION_PARAMS)


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


class LocationError(Exception):
    """A storage location that cannot be used (missing fsspec package, unknown protocol, no credentials, no access);
    the message is one line naming the location."""


def _storage_problem(uri: str, e: BaseException) -> str:
    """One line saying what is wrong with ``uri`` given the error its filesystem raised."""
    import fsspec
    from fsspec.registry import known_implementations

    protocol = fsspec.core.split_protocol(uri)[0] or "file"
    first = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, ImportError):
        impl = known_implementations.get(protocol, {})
        package = impl.get("class", "").split(".")[0]
        if package:
            return f"fsspec protocol {protocol!r} needs the package {package} (pip install {package})"
        return f"fsspec protocol {protocol!r} cannot be used: {first}"
    if isinstance(e, ValueError) and "protocol not known" in first.lower():
        return f"fsspec does not know the protocol {protocol!r}"
    name = type(e).__name__
    if name == "NoCredentialsError":
        return "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)"
    if isinstance(e, PermissionError):
        return f"permission denied ({first})"[:300]
    return f"{name}: {first}"[:300]


def _storage_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ImportError, ValueError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:
        pass
    return tuple(errors)


@contextlib.contextmanager
def _at(role: str, uris: list[str]):
    """Turn a storage error raised inside into a ``LocationError`` naming ``role`` and ``uris`` (the first of which
    decides the protocol); input errors the store already words (``InputError``) pass through unchanged."""
    from store.sources import InputError

    try:
        yield
    except InputError:
        raise
    except _storage_errors() as e:
        raise LocationError(f"{role} {' '.join(uris)}: {_storage_problem(uris[0], e)}") from None


def _check_locations(inputs: list[str], output: str, storage_options: dict) -> None:
    """Each location's filesystem can be created (its fsspec package is installed, its protocol known): no I/O."""
    import fsspec

    for role, uri in [("input", u) for u in inputs] + [("output", output)]:
        with _at(role, [uri]):
            fsspec.core.url_to_fs(uri, **storage_options)


def _remote(uris: list[str]) -> list[str]:
    """The URIs of ``uris`` on remote storage (where listing can fail for credentials or the network), else all."""
    import fsspec

    remote = [u for u in uris if (fsspec.core.split_protocol(u)[0] or "file") not in ("file", "local")]
    return remote or list(uris)


def _storage_options() -> dict:
    """fsspec options for every read and write. Empty: S3 endpoint and credentials come from the standard AWS
    environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` …, or the instance role), which Ray workers inherit,
    so no secret ever passes through config, task arguments or logs."""
    return {}


class StallWatchdog:
    """Log a WARNING when no chunk finished for ``stall_s`` seconds (then again every ``stall_s``), naming the chunk
    being worked on and how long it has been: a stalled Dataset must never be silent. ``stall_s`` 0 disables it.

    Use as a context manager; call ``chunk(name)`` when a chunk starts and ``done()`` when it finishes.
    """

    def __init__(self, stall_s: float, log: logging.Logger | None = None, poll_s: float | None = None) -> None:
        self.stall_s = float(stall_s)
        self.log = log or logger
        self.poll_s = poll_s if poll_s is not None else min(max(self.stall_s / 10, 0.01), 5.0)
        self._lock = threading.Lock()
        self._name = "(none yet)"
        self._since = time.monotonic()  # last progress: start, or a chunk finished
        self._chunk_start = self._since
        self._warned_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def chunk(self, name: str) -> None:
        with self._lock:
            self._name, self._chunk_start = name, time.monotonic()

    def done(self) -> None:
        with self._lock:
            self._since, self._warned_at = time.monotonic(), 0.0

    def check(self) -> bool:
        """Log the warning if it is due; True when it logged."""
        now = time.monotonic()
        with self._lock:
            idle = now - self._since
            if self.stall_s <= 0 or idle < self.stall_s or idle - self._warned_at < self.stall_s:
                return False
            self._warned_at = idle
            name, running = self._name, now - self._chunk_start
        self.log.warning(
            "no chunk finished for %.0f s; chunk %s has run for %.0f s (Ray Data may be stalled: check the cluster's "
            "free CPUs/GPUs and the Ray logs; run.stall_warning_s sets this warning)",
            idle,
            name,
            running,
        )
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def __enter__(self) -> StallWatchdog:
        if self.stall_s > 0:
            self._thread = threading.Thread(target=self._loop, name="raypose-stall-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _local_cpus(num_cpus: int | None) -> float | None:
    """CPUs of the local Ray this job will start (``--num-cpus`` or all), or None when it will use a running Ray
    (``RAY_ADDRESS``, or one already initialised in this process), whose resources are known only once connected."""
    import ray

    if os.environ.get("RAY_ADDRESS") or ray.is_initialized():
        return None
    return float(num_cpus or os.cpu_count() or 1)


#: Exit codes (the module docstring explains them).
EXIT_DONE, EXIT_CRASHED, EXIT_USAGE, EXIT_INFRASTRUCTURE = 0, 1, 2, 3
DEFAULT_LEASE_TTL_S = 60.0


def main(argv: list[str] | None = None) -> int:
    """Run the job; the output's lease, once taken, is released however the run ends."""
    with contextlib.ExitStack() as cleanup:
        return _main(argv, cleanup)


def _main(argv: list[str] | None, cleanup: contextlib.ExitStack) -> int:
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
    parser.add_argument(
        "--exact",
        action="store_true",
        help="fp32 networks (sppe.precision=fp32, detector.precision=fp32): outputs equal AlphaPose's given the same "
        "weights and boxes; the default precision is auto (bf16 on CPUs with native bf16)",
    )
    parser.add_argument("--run-id", help="id of this run (default: time + random suffix)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray started here (default: all)")
    parser.add_argument(
        "--break-lease",
        action="store_true",
        help="take the output's lease even from a live run (only when that run is certainly dead)",
    )
    parser.add_argument(
        "--lease-ttl-s",
        type=float,
        default=DEFAULT_LEASE_TTL_S,
        help="seconds the output's lease stays live without a heartbeat (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # not its INFO lines around a one-line error

    from pipelines.configs import ConfigError, config_hash, to_dict
    from pipelines.label import check_resources, plan_resources
    from store.sources import InputError, scan_inputs

    # ---- validate everything before any work starts -------------------------------------------------------------
    storage_options = _storage_options()
    try:
        if args.exact:
            args.overrides = [*args.overrides, *_exact_overrides(args.overrides)]
        cfg = build_config(args.config, args.overrides)
        local_cpus = _local_cpus(args.num_cpus)
        if local_cpus is not None:  # a local Ray started here: its CPUs are known now (GPUs once it runs)
            check_resources(cfg, local_cpus)  # plans unset pools itself
        _check_locations(args.input, args.output, storage_options)
        with _at("input", _remote(args.input)):
            listing = scan_inputs(args.input, storage_options)
        units = listing.units
        if listing.skipped:  # before the "nothing found" error too: it may be why (a folder of .tif frames)
            logger.warning("%s", _skipped_line(listing.skipped))
        if not units:
            raise InputError(f"no videos or images found under {' '.join(args.input)}")
        cfg = _resolve_weights(cfg)
        det_sha = _detector_digest(cfg.detector)
        sppe_sha = _sppe_digest(cfg.sppe, det_sha)
        with _at("output", [args.output]):
            _check_output(args.output, storage_options)
    except (ConfigError, InputError, LocationError, ValueError, OSError) as e:
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
    # The lease in two steps: the candidate now, held after its settle time, which the manifest listing and Ray's
    # start-up fill (only reads of the output happen in between).
    lease = _begin_lease(args, run_id, storage_options)
    if lease is None:
        return EXIT_USAGE
    cleanup.callback(lease.release)  # on success, failure and Ctrl-C alike

    import ray

    from actors.configs import inference_form
    from actors.publish import PublishSpec
    from pipelines.label import configure_data_context, probe_units, run_label
    from store.manifest import read_manifests
    from store.writers import sweep_stale_temps

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
    stopped = None  # why the run stopped before its last chunk (an infrastructure failure), if it did
    if not todo:  # decided before Ray starts: a rerun of finished work costs no cluster start-up
        logger.info("every input is already committed with this config: nothing to run, Ray not started")
    else:
        try:
            init_ray(args.num_cpus)
            resources = ray.cluster_resources()
            # Unset pool sizes and threads are sized from the cluster (resources are not hashed: results do not
            # depend on them); the summary records what was used.
            cfg = plan_resources(cfg, resources.get("CPU", 0.0), resources.get("GPU", 0.0))
            effective["resources"] = to_dict(cfg.resources)
            logger.info("resources: %s", json.dumps(effective["resources"]))
            check_resources(cfg, resources.get("CPU", 0.0), resources.get("GPU", 0.0))
        except ValueError as e:  # before any Dataset is built: the pipeline would hang on this cluster
            if local_cpus is None:
                # A running cluster may still scale up (cluster.yaml's GPU workers start at 0): say it, don't refuse;
                # the stall watchdog reports if nothing moves.
                logger.warning("%s (the cluster may still add nodes; continuing)", e)
            else:
                print(f"error: {e}", file=sys.stderr)
                return 2
        except Exception:
            logger.exception("run %s failed to start Ray", run_id)
            return 1
    if not _confirm_lease(args, lease):
        return EXIT_USAGE
    lease.start_heartbeat()
    sweep_stale_temps(args.output, storage_options)  # temp files that killed writers left (by age; logged)
    if todo:
        n_chunks = -(-len(todo) // cfg.run.chunk_units)
        try:
            configure_data_context()
            with StallWatchdog(cfg.run.stall_warning_s) as watch:
                for c in range(0, len(todo), cfg.run.chunk_units):
                    if lease.lost:  # another run took the output over (logged): stop writing into it
                        stopped = "this run lost the output's lease to another run"
                        break
                    chunk = todo[c : c + cfg.run.chunk_units]
                    name = f"{c // cfg.run.chunk_units + 1}/{n_chunks} ({len(chunk)} videos from {chunk[0].video_id})"
                    watch.chunk(name)
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
                    summaries += run_label(shards, cfg, spec)
                    if INTERRUPT.is_set():  # a Ctrl-C whose KeyboardInterrupt was swallowed on the way
                        raise KeyboardInterrupt
                    watch.done()
                    logger.info(
                        "chunk %d/%d done: %d videos (%d of %d)",
                        c // cfg.run.chunk_units + 1,
                        n_chunks,
                        len(chunk),
                        c + len(chunk),
                        len(todo),
                    )
        except Exception as e:
            if INTERRUPT.is_set():  # the Ctrl-C's KeyboardInterrupt came back as another exception (a Ray error)
                raise KeyboardInterrupt from None
            if not _infrastructure_failure(e):
                logger.exception("run %s failed; committed videos are kept and a rerun resumes after them", run_id)
                return EXIT_CRASHED
            # Not the inputs' fault: record the unfinished videos as infrastructure errors and say so (exit 3).
            stopped = _failure_line(e)
            logger.exception("run %s stopped by an infrastructure failure; a rerun resumes", run_id)
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
        stopped=stopped,
        skipped=listing.skipped,
        sppe_inference=inference_form(cfg.sppe),
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
                    "input_errors",
                    "infrastructure_errors",
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
    if summary["infrastructure_errors"]:
        print(
            f"error: {summary['infrastructure_errors']} infrastructure error(s) (kind 'infrastructure' in "
            f"{summary['summary_uri'].rsplit('/', 1)[0]}/errors.parquet): "
            f"{summary['processed'] - summary['published']} video(s) not published; a rerun resumes with them",
            file=sys.stderr,
        )
        return EXIT_INFRASTRUCTURE
    return EXIT_DONE


#: Exception names (in a Ray task's traceback text, where the original type is gone) that are infrastructure
#: failures: every built-in OSError (disk full, permissions, network, timeouts), memory, object-store clients.
_INFRASTRUCTURE_NAMES = sorted(
    {n for n, c in vars(builtins).items() if isinstance(c, type) and issubclass(c, OSError)}
    | {"MemoryError", "OutOfMemoryError", "ObjectStoreFullError", "ClientError", "EndpointConnectionError"}
)
_INFRASTRUCTURE_TRACE = re.compile(
    r"^\s*(?:[\w.]+\.)?(?:" + "|".join(_INFRASTRUCTURE_NAMES) + r")(?::|$)", re.MULTILINE
)


def _infrastructure_failure(e: BaseException) -> bool:
    """A chunk's failure that is not the inputs' fault: Ray's own failures (dead workers, actors or nodes, its OOM
    killer, lost objects), or a task that raised an I/O or memory error (``store.video_publish.error_kind``; Ray
    Data re-raises a task's error as text, so its traceback is searched for those names). Anything else is a bug."""
    import ray.exceptions

    from store.video_publish import INFRASTRUCTURE, error_kind

    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if error_kind(x) == INFRASTRUCTURE:
            return True
        if isinstance(x, (ray.exceptions.RayTaskError, ray.exceptions.UserCodeException)):
            if _INFRASTRUCTURE_TRACE.search(str(x)):
                return True
        elif isinstance(x, ray.exceptions.RayError):
            return True
        x = x.__cause__ or x.__context__
    return False


def _failure_line(e: BaseException) -> str:
    """One line for a chunk's failure: the innermost ``Name: message`` line of its text, or its type and message."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    named = [ln for ln in lines if re.match(r"^(?:[\w.]+\.)?\w+(?:Error|Exception|Exit)\b", ln)]
    return (named[0] if named else f"{type(e).__name__}: {' '.join(lines)}")[:500]


def _begin_lease(args, run_id: str, storage_options: dict):
    """This run's candidate lease on the output (``store.lease``), or None after printing why another run has it."""
    from store.lease import Lease, LeaseHeld

    try:
        lease = Lease(args.output, run_id, storage_options, ttl_s=args.lease_ttl_s)
        with _at("output", [args.output]):
            lease.begin(break_lease=args.break_lease)
    except (LeaseHeld, LocationError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    return lease


def _confirm_lease(args, lease) -> bool:
    """Hold the lease begun by ``_begin_lease`` (False after printing why another run has it)."""
    from store.lease import LeaseHeld

    try:
        with _at("output", [args.output]):
            taken = lease.confirm()
    except (LeaseHeld, LocationError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return False
    for r in taken:
        logger.warning(
            "took over the lease on %s from %s: %s",
            args.output,
            r.describe(),
            "--break-lease" if args.break_lease and r.is_live() else "that run is gone (stale lease)",
        )
    return True


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
    *,
    stopped: str | None = None,
    skipped: list[str] | None = None,
    sppe_inference: dict | None = None,
) -> dict:
    """Write ``runs/<run_id>/errors.parquet`` and ``summary.json``. ``stopped``: why the run stopped early (an
    infrastructure failure), so that its unfinished videos are reported as such."""
    import pyarrow as pa

    from store.manifest import read_manifests
    from store.video_publish import INFRASTRUCTURE, INPUT
    from store.writers import join_uri, put_atomic, write_table_atomic

    errors = [e for s in summaries for e in json.loads(s["errors_json"])]
    seen = {s["video_id"] for s in summaries}
    unseen = [u for u in todo if u.video_id not in seen]
    committed = read_manifests(args.output, storage_options) if unseen else {}
    published_unreported = 0
    for u in unseen:  # a video that produced no summary at all is an error too, never silently dropped
        m = committed.get(u.video_id)
        if m is not None and m.run_id == run_id and m.config_hash == chash:
            published_unreported += 1  # committed before its chunk failed (its bad frames are in the frames table)
            continue
        errors.append(
            {
                "video_id": u.video_id,
                "source_uri": u.source_uri,
                "shard_index": -1,
                "frame_index": -1,
                "stage": "pipeline",
                "message": f"not finished: {stopped}" if stopped else "no result returned for this input",
                "kind": INFRASTRUCTURE,  # never the input's fault: a rerun processes it
            }
        )
    for e in errors:
        e.setdefault("kind", INPUT)
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
                ("kind", pa.string()),  # "input" (bad media) or "infrastructure" (I/O, memory, workers: rerun)
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
        "published": int(sum(bool(s["published"]) for s in summaries)) + published_unreported,
        "frames": frames,
        "persons": int(sum(s["num_persons"] for s in summaries)),
        "errors": len(errors),
        "input_errors": sum(e["kind"] == INPUT for e in errors),
        "infrastructure_errors": sum(e["kind"] == INFRASTRUCTURE for e in errors),
        "stopped": stopped,  # why the run stopped before its last chunk (an infrastructure failure), or null
        # files in the input folders and globs that are neither videos nor images (not labelled), a few named
        "skipped_inputs": len(skipped or ()),
        "skipped_input_examples": list(skipped or ())[:SKIPPED_EXAMPLES],
        "wall_seconds": elapsed,
        "frames_per_s": frames / elapsed if elapsed > 0 else 0.0,
        "stage_seconds": stage_seconds,
        "random_weights": random_weights,
        "sppe_inference": sppe_inference or {},  # actors.sppe.inference_form: how the pose network ran
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


SKIPPED_EXAMPLES = 5
INTERRUPTED = "interrupted: committed videos are kept; rerun the same command to resume"


def _skipped_line(skipped: list[str]) -> str:
    """One line on the files listing skipped: how many, by extension, and a few of them."""
    from collections import Counter

    from store.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    def ext(uri: str) -> str:
        stem, dot, suffix = uri.rsplit("/", 1)[-1].rpartition(".")
        return f".{suffix.lower()}" if dot and stem else "no extension"

    by_ext = ", ".join(f"{k} ×{v}" for k, v in Counter(map(ext, skipped)).most_common())
    shown = ", ".join(skipped[:SKIPPED_EXAMPLES]) + (", …" if len(skipped) > SKIPPED_EXAMPLES else "")
    files = "file" if len(skipped) == 1 else "files"
    return (
        f"skipped {len(skipped)} {files} in the input folders that are neither videos ({' '.join(VIDEO_EXTENSIONS)}) "
        f"nor images ({' '.join(IMAGE_EXTENSIONS)}): {by_ext}; e.g. {shown} (named on their own they are an error)"
    )


def _on_sigint(signum, frame) -> None:
    """First Ctrl-C: remember it and raise KeyboardInterrupt (as Python's default handler does); a second one
    while the first is being handled leaves at once."""
    if INTERRUPT.is_set():
        os._exit(EXIT_INTERRUPTED)
    INTERRUPT.set()
    raise KeyboardInterrupt


def _cli() -> int:
    """``python -m jobs.label``: :func:`main`, with Ctrl-C (SIGINT) reported in one line and exit status 130
    instead of a traceback (``jobs.ray_init.run_interruptible``: Ray is shut down once Ray Data's threads have
    stopped); committed videos stay committed (a video is published whole or not at all), so the same command
    resumes."""
    import signal

    def noting_interrupt() -> int:
        try:
            return main()
        except KeyboardInterrupt:
            INTERRUPT.set()  # also when the KeyboardInterrupt came from elsewhere (e.g. raised by a library)
            raise

    signal.signal(signal.SIGINT, _on_sigint)
    adopt_orphans()  # Ray's workers that outlive their raylet are waited for and reaped here (exit_process)
    status = run_interruptible(noting_interrupt, INTERRUPTED)
    # Here, not in Ray's atexit handler, which sleeps 0.5 s first: with exit_process, a 4-frame job's last output to
    # its exit went from 3.0 s to 1.2-1.7 s (issue 13).
    shutdown_ray()
    return status


if __name__ == "__main__":
    exit_process(_cli())
