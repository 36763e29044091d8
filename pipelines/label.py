"""The labelling pipeline: shards → decode → detect → SPPE → pose NMS → stage → per-video track and publish.

``build_label_dataset`` is the design's shape sentence as Ray Data calls, one per stage, with resources from the
config at each call site and no math::

    from_items(shards) ─map_batches(decode)            CPU tasks: uint8 frames (+ ORB pairs), error rows for bad media
                       ─map_batches(Detector)          actor pool (GPU when configured): boxes + crops, no frames
                       ─map_batches(SPPE)              actor pool: crops → keypoints (skipped with sppe.arch=detector)
                       ─map_batches(apply_pose_nms)    CPU tasks: per-frame parametric pose NMS (or CrowdPose's
                                                       joint association on the SPPE's joint candidates)
                       ─map_batches(stage_rows)        CPU tasks: rows → staged Parquet per (video, shard) piece
    publish_videos: group the staged references by video_id (driver); one task per video: PoseFlow shard by
                    shard, publish atomically

One row is one frame all the way (persons as ragged arrays), so frames without people are never lost and no stage
regroups frames. Only file references reach the per-video step (``store.staging`` explains the two phases), so
the per-video stage holds the tracker's window plus one shard, never a whole video. ``probe_units`` plans the
shards in Ray tasks first (a probe demuxes a whole video, which must not happen in the driver for S3 inputs).
``LabelConfig`` is the job's whole configuration.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from actors.configs import CANDIDATE_DECODES, DetectorConfig, SPPEConfig
from actors.detect import Detector
from actors.pose_nms import apply_pose_nms
from actors.publish import PublishSpec, publish_video, stage_rows
from actors.sppe import SPPE
from models.correspondences import OrbParams
from models.crowdpose import ALPHAPOSE_CANDIDATES, CandidateParams, CrowdAssociationParams, candidate_params_for
from models.pose_nms import PoseNMSParams
from models.poseflow import PoseFlowParams
from pipelines.decode import decode_batch, probe_batch
from store.sources import WorkUnit

__all__ = [
    "StageResources",
    "ResourcesConfig",
    "ServeConfig",
    "RunConfig",
    "TrackingConfig",
    "LabelConfig",
    "configure_data_context",
    "probe_units",
    "build_label_dataset",
    "publish_videos",
    "run_label",
    "check_resources",
    "plan_resources",
    "actor_stage",
]


@dataclass(frozen=True, kw_only=True)
class StageResources:
    """Ray resources of one actor-pool stage. ``None`` means "size it from the cluster" (``plan_resources``, run
    by ``jobs.label`` once the cluster's CPUs are known); a value given in the config always wins."""

    actors: int | None = None  # pool size (fixed: autoscaling pools start at one actor and may stay there,
    # ray-project/ray#59144)
    # CPUs reserved per actor; the pools' actors × num_cpus must leave room for one decode, pose-NMS and publish
    # task, or the pipeline hangs silently (ray-project/ray#44687): ``check_resources`` refuses such a configuration
    num_cpus: float | None = None
    num_gpus: float = 0.0  # per actor; fractions share a GPU
    # torch intra-op threads per actor. Ray sets OMP_NUM_THREADS to the reservation (1 for any fraction), which left
    # a 2-core machine's only SPPE actor on one core while decode mostly waited on it (issue 13)
    threads: int | None = None
    # SPPE pool only: forwards one CPU actor runs at once, each on threads // streams torch threads (models.streams;
    # no OpenMP barriers between them). Unset: 2 when the actor's threads are even, else 1; GPU actors: 1
    streams: int | None = None
    batch_size: int = 8  # frames per call

    def __post_init__(self) -> None:
        if (self.actors is not None and self.actors < 1) or self.batch_size < 1:
            raise ValueError(f"actors and batch_size must be ≥ 1 (got {self.actors}, {self.batch_size})")
        if (self.num_cpus is not None and self.num_cpus < 0) or self.num_gpus < 0:
            raise ValueError("num_cpus and num_gpus must be ≥ 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be ≥ 1 (or unset for automatic), got {self.threads}")
        if self.streams is not None and not 1 <= self.streams <= (self.threads or self.streams):
            raise ValueError(
                f"streams must be between 1 and threads ({self.threads}): each stream needs a thread; "
                f"got {self.streams}"
            )


@dataclass(frozen=True, kw_only=True)
class ResourcesConfig:
    decode_cpus: float = 0.25  # per decode task
    detect: StageResources = field(default_factory=StageResources)
    sppe: StageResources = field(default_factory=StageResources)
    pose_nms_cpus: float = 0.25
    publish_cpus: float = 0.25  # per-video track-and-publish task


#: Most torch threads one CPU actor gets before ``plan_resources`` splits a pool into more actors (intra-op
#: scaling of a ResNet forward flattens past a handful of cores; more actors keep every core busy).
MAX_THREADS_PER_ACTOR = 8


def plan_resources(cfg: LabelConfig, cpus: float, gpus: float = 0.0) -> LabelConfig:
    """``cfg`` with every unset actor-pool field of ``cfg.resources`` sized from the cluster's CPUs.

    The rule (explicit values are kept and counted first):

    * CPU tasks (decode, pose NMS, publish) keep ``room = min(max(1, cpus / 4), cpus − 0.5)`` CPUs, never less than
      their largest single task, so the pipeline always makes progress (issue 14: 1 CPU hung forever).
    * The rest goes to the pools: a detector that reads precomputed boxes only cuts crops (≤ 0.25 CPU, one actor);
      a network detector and the SPPE split it 1 : 2. A pool of ``n`` CPUs gets ``ceil(n / MAX_THREADS_PER_ACTOR)``
      actors.
    * Threads: a CPU actor runs ``round(reservation + its share of room)`` torch threads, so the pools together use
      every core (at most ``MAX_THREADS_PER_ACTOR``); the CPU tasks mostly wait on the networks, so their
      reservation would otherwise idle. On 2 CPUs with precomputed boxes that is one SPPE actor reserving 0.75 CPU
      and running 2 threads.
    * GPU pools (``num_gpus > 0``) reserve at most 1 CPU per actor and default to that many threads.
    * Streams: a CPU SPPE actor with an even thread count runs two forwards at once, each on half its threads
      (``models.streams``); on 2 CPUs, two single-thread forwards.

    Args:
        cfg: the job's configuration.
        cpus: CPUs of the cluster (or of the local Ray this job starts).
        gpus: GPUs of the cluster (0 when none or not known).
    Returns:
        A config whose ``resources`` has no unset field; results do not depend on it (resources are not hashed).
    """
    r = cfg.resources
    need = max(r.decode_cpus, r.pose_nms_cpus, r.publish_cpus)
    room = max(min(max(1.0, cpus / 4), cpus - 0.5), need)
    pools: dict[str, tuple[StageResources, float]] = {
        "detect": (r.detect, 0.0 if cfg.detector.arch == "precomputed" else 1.0)
    }
    if cfg.sppe.arch != "detector":
        pools["sppe"] = (r.sppe, 2.0)
    fixed = sum(s.num_cpus * (s.actors or 1) for s, _ in pools.values() if s.num_cpus is not None)
    budget = max(cpus - room - fixed, 0.0)
    auto = {n: w for n, (s, w) in pools.items() if s.num_cpus is None}
    totals: dict[str, float] = {}
    light = [n for n, w in auto.items() if w == 0.0]
    for n in light:
        totals[n] = min(0.25, budget / (4 * len(light)))
    budget -= sum(totals.values())
    heavy = {n: w for n, w in auto.items() if w > 0.0}
    for n, w in heavy.items():
        totals[n] = budget * w / sum(heavy.values())
    planned = {}
    for n, (s, w) in pools.items():
        if s.num_cpus is not None:
            actors = s.actors or 1
            per_actor = s.num_cpus
        else:
            actors = s.actors or (1 if w == 0.0 else max(1, math.ceil(totals[n] / MAX_THREADS_PER_ACTOR)))
            per_actor = math.floor(100 * totals[n] / actors) / 100
            if s.num_gpus > 0:
                per_actor = min(per_actor, 1.0)
        planned[n] = (s, actors, per_actor)
    heavy_actors = sum(a for n, (s, a, c) in planned.items() if pools[n][1] > 0 and s.num_gpus == 0)
    out = {}
    for n, (s, actors, per_actor) in planned.items():
        threads = s.threads
        if threads is None:
            if pools[n][1] > 0 and s.num_gpus == 0:
                threads = round(per_actor + room / max(heavy_actors, 1))
            else:
                threads = round(per_actor)
            threads = int(min(max(threads, 1), max(cpus, 1), MAX_THREADS_PER_ACTOR))
        streams = s.streams
        if streams is None:
            # two single-thread forwards beat one two-thread forward (models.streams): the whole Bonn ×10 job 1.17×
            # (fp32, 2 CPUs, 3 rounds); an odd count would leave a thread idle; more streams were not measured
            streams = 2 if n == "sppe" and s.num_gpus == 0 and threads % 2 == 0 else 1
        out[n] = dataclasses.replace(s, actors=actors, num_cpus=per_actor, threads=threads, streams=streams)
    return dataclasses.replace(cfg, resources=dataclasses.replace(r, **out))


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    shard_frames: int = 256  # frames per video shard (≫ GOP: each shard decodes from a keyframe)
    decode_chunk: int = 16  # frames per decoded batch
    chunk_units: int = 64  # videos per Dataset execution: a crash loses at most one chunk's work
    stall_warning_s: float = 300.0  # warn when no chunk finished for this long; 0 disables the warning

    def __post_init__(self) -> None:
        for name in ("shard_frames", "decode_chunk", "chunk_units"):
            if getattr(self, name) < 1:
                raise ValueError(f"run.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.stall_warning_s < 0:
            raise ValueError(f"run.stall_warning_s must be ≥ 0 (0 disables), got {self.stall_warning_s}")


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    enabled: bool = True  # PoseFlow per video; False leaves track_id null
    # mode "improved" (default here) or "released" (AlphaPose's tracker exactly, the default of PoseFlowParams
    # itself). The improved mode had fewer or equal ID switches and equal or higher IDF1 than the released one on
    # every perturbed Bonn scenario of benchmarks/poseflow.py (held-out seeds; pose-only, and ORB with the exact or
    # the ±48 px windowed matcher), at about half the tracking time: the condition issue 6 set for making it the
    # pipeline's default. (With ±24/±16 px windows at one frame in five it had more; keep the window at 48.)
    poseflow: PoseFlowParams = field(default_factory=lambda: PoseFlowParams(mode="improved"))
    # "none": pose-only (AlphaPose's identity fallback, computed analytically; no pixels needed);
    # "orb": ORB point pairs between consecutive frames, computed in the decode stage (AlphaPose's PoseFlow input).
    correspondences: str = "none"
    # The windowed matcher (±48 px): tracking equal to the exact matcher on every benchmark scenario, ~7× cheaper
    # per pair (benchmarks/poseflow.py); matcher=bruteforce is the exact 2-NN that AlphaPose's FLANN approximates.
    orb: OrbParams = field(default_factory=lambda: OrbParams(matcher="windowed"))

    def __post_init__(self) -> None:
        if self.correspondences not in ("none", "orb"):
            raise ValueError(f"tracking.correspondences must be 'none' or 'orb', got {self.correspondences!r}")

    def orb_params(self) -> OrbParams | None:
        """What the decode stage computes: ORB parameters, or None for no correspondences."""
        return self.orb if self.enabled and self.correspondences == "orb" else None


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """The online endpoint (``jobs.serve``): replicas, request batching and limits. Read from the same YAML as
    ``jobs.label`` (which ignores it): one file drives both. Nothing here changes a pose."""

    host: str = "127.0.0.1"  # "0.0.0.0" to listen on every interface (put it behind your own TLS proxy)
    port: int = 8000
    route_prefix: str = "/"
    detect_replicas: int = 1
    sppe_replicas: int = 1
    ingress_replicas: int = 1
    detect_num_cpus: float = 0.5  # per replica
    sppe_num_cpus: float = 1.0
    detect_num_gpus: float = 0.0  # > 0: the replica runs on a GPU (device "auto" picks it)
    sppe_num_gpus: float = 0.0
    threads: int | None = None  # torch threads per CPU replica; None: its CPU reservation rounded up
    detect_max_batch: int = 4  # images per detector forward (Serve's dynamic batching)
    sppe_max_batch: int = 16  # images (all their persons) per SPPE call
    batch_wait_timeout_s: float = 0.01  # how long a replica waits to fill a batch
    max_ongoing_requests: int = 16  # requests a replica works on at once (the ingress's: requests in flight)
    max_queued_requests: int = 32  # requests waiting for the ingress beyond that; more get HTTP 503
    max_request_bytes: int = 20 * 1024 * 1024  # larger bodies get HTTP 413
    max_image_pixels: int = 40_000_000  # larger images (declared size) get HTTP 413
    token_env: str = "RAYPOSE_SERVE_TOKEN"  # when this environment variable is set, requests need its bearer token

    def __post_init__(self) -> None:
        for name in (
            "detect_replicas",
            "sppe_replicas",
            "ingress_replicas",
            "detect_max_batch",
            "sppe_max_batch",
            "max_ongoing_requests",
            "max_request_bytes",
            "max_image_pixels",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"serve.{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0 < self.port < 65536:
            raise ValueError(f"serve.port must be in 1..65535, got {self.port}")
        if self.max_queued_requests < -1 or self.batch_wait_timeout_s < 0:
            raise ValueError("serve.max_queued_requests must be ≥ -1 (-1: no limit) and batch_wait_timeout_s ≥ 0")
        if min(self.detect_num_cpus, self.sppe_num_cpus, self.detect_num_gpus, self.sppe_num_gpus) < 0:
            raise ValueError("serve.*_num_cpus and *_num_gpus must be ≥ 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"serve.threads must be ≥ 1 (or unset), got {self.threads}")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"serve.route_prefix must start with '/', got {self.route_prefix!r}")


@dataclass(frozen=True, kw_only=True)
class LabelConfig:
    """Everything ``jobs.label`` runs with; hashed (minus resources) into every commit marker."""

    detector: DetectorConfig
    sppe: SPPEConfig
    pose_nms: PoseNMSParams = field(default_factory=PoseNMSParams)
    # CrowdPose's association, used when pose_nms.method=crowd_association: crowd.method "released" (AlphaPose's
    # --matching, candidate_reselect) or "paper" (the paper's global maximum-weight matching); models.crowdpose
    crowd: CrowdAssociationParams = field(default_factory=CrowdAssociationParams)
    # the joint candidates the SPPE extracts for it (AlphaPose's findPeak/processPeaks constants; max_candidates is
    # M, the slots kept per person and joint: AlphaPose keeps every peak, 4 covers what its association reaches)
    candidates: CandidateParams = field(default_factory=lambda: ALPHAPOSE_CANDIDATES)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)  # jobs.serve only

    def __post_init__(self) -> None:
        if self.sppe.arch == "detector":
            if self.detector.arch != "yolo":
                raise ValueError(
                    f"sppe.arch=detector takes the detector's own keypoints: it needs detector.arch=yolo "
                    f"with a pose checkpoint, not {self.detector.arch}"
                )
            if self.sppe.keypoint_set != "coco17":
                raise ValueError("sppe.arch=detector: YOLO pose checkpoints predict coco17 keypoints")
        if self.pose_nms.method == "crowd_association":
            # The association reads joint candidates, i.e. the peaks of MSE heatmaps (AlphaPose --matching).
            why = None
            if self.sppe.arch == "blazepose_full":
                why = "sppe.arch=blazepose_full regresses keypoints (no heatmaps)"
            elif self.sppe.arch == "detector":
                why = "sppe.arch=detector takes the detector's own keypoints (no heatmaps)"
            elif self.sppe.decode not in CANDIDATE_DECODES:
                why = f"sppe.decode={self.sppe.decode} decodes integral-regression outputs, not heatmaps with peaks"
            if why is not None:
                raise ValueError(
                    f"pose_nms.method=crowd_association needs joint candidates from a heatmap SPPE, but {why}; use "
                    f"a heatmap SPPE (sppe.arch=fastpose_*, …) with sppe.decode in {', '.join(CANDIDATE_DECODES)}, "
                    "or pose_nms.method=parametric"
                )
        if self.resources.detect.streams not in (None, 1):
            raise ValueError("resources.detect.streams: only the SPPE pool runs several forwards per actor")
        if self.sppe.precision == "int8" and self.resources.sppe.num_gpus > 0:
            raise ValueError(
                "sppe.precision=int8 runs on the CPU, but resources.sppe.num_gpus gives the pose actors a GPU; "
                "use fp16/bf16 there, or resources.sppe.num_gpus=0"
            )

    def resolved(self) -> LabelConfig:
        """This config with ``sppe.precision: auto`` replaced by what it means here (``SPPEConfig.resolved``,
        ``models.precision``: bf16 for a heatmap SPPE on a CPU with native bf16, else fp32; a pose pool given GPUs by
        ``resources`` or a ``cuda`` device counts as a GPU). ``jobs.label`` resolves on its driver before hashing the
        config, so the hash, the summary and every actor see the precision that runs."""
        s = self.sppe
        gpu = s.device.startswith("cuda") or (s.device == "auto" and self.resources.sppe.num_gpus > 0)
        return dataclasses.replace(self, sppe=s.resolved(gpu=gpu))

    def sppe_candidates(self) -> CandidateParams | None:
        """The joint candidates the SPPE stage extracts: None unless ``pose_nms.method=crowd_association``; then
        ``candidates`` as the association method reads them (``models.crowdpose.candidate_params_for``)."""
        if self.pose_nms.method != "crowd_association":
            return None
        return candidate_params_for(self.crowd.method, self.candidates)

    def result_affecting(self) -> dict:
        """The part of the config that changes outputs (resources and chunking do not)."""
        d = dataclasses.asdict(self)
        d.pop("resources")
        d.pop("serve")
        if self.pose_nms.method != "crowd_association":
            d.pop("crowd")  # unused: configs (and hashes, so committed outputs) from before it existed stay valid
            d.pop("candidates")
        d["run"] = {"shard_frames": self.run.shard_frames}  # shard length can move nothing, but keep it visible
        return d


def check_resources(cfg: LabelConfig, cpus: float, gpus: float | None = None) -> None:
    """Refuse resources on which the pipeline could never run, instead of letting it hang without a word.

    Ray Data starts each fixed-size actor pool whole and keeps it for the Dataset's execution, so the pools'
    reservations must fit the cluster and leave room for at least one task of each CPU-task stage (decode, pose
    NMS, publish); otherwise the tasks wait forever for a CPU the actors hold (ray-project/ray#44687).

    Args:
        cfg: the job's configuration (the SPPE pool does not exist with ``sppe.arch=detector``).
        cpus: CPUs of the cluster (``ray.cluster_resources()["CPU"]``, or ``--num-cpus`` before a local Ray starts).
        gpus: GPUs of the cluster; None when not known yet (the GPU check is skipped).
    Raises:
        ValueError: one line with the arithmetic and what to lower.
    """
    r = cfg.resources
    if any(s.num_cpus is None or s.actors is None for s in (r.detect, r.sppe)):
        cfg = plan_resources(cfg, cpus, gpus or 0.0)
        r = cfg.resources
    pools = [("detect", r.detect)]
    if cfg.sppe.arch != "detector":
        pools.append(("sppe", r.sppe))
    parts = [f"{name} {s.actors} actor{'s' if s.actors > 1 else ''} × {s.num_cpus:g} CPU" for name, s in pools]
    reserved = sum(s.actors * s.num_cpus for _, s in pools)
    tasks = [("decode", "decode_cpus"), ("pose-NMS", "pose_nms_cpus"), ("publish", "publish_cpus")]
    what, key = max(tasks, key=lambda t: getattr(r, t[1]))  # ties: the first, decode
    need = getattr(r, key)
    left = cpus - reserved
    if left + 1e-9 < need:
        raise ValueError(
            f"resources: {' + '.join(parts)} = {reserved:g} of {cpus:g} CPUs leaves {max(left, 0.0):g} < {need:g} "
            f"(resources.{key}) for {what} tasks, so the pipeline would hang; lower resources.*.num_cpus or "
            f"resources.*.actors, or give it more CPUs"
        )
    if gpus is None:
        return
    gpu_pools = [(name, s) for name, s in pools if s.num_gpus > 0]
    wanted = sum(s.actors * s.num_gpus for _, s in gpu_pools)
    if wanted > gpus + 1e-9:
        gparts = [f"{name} {s.actors} actor{'s' if s.actors > 1 else ''} × {s.num_gpus:g} GPU" for name, s in gpu_pools]
        raise ValueError(
            f"resources: {' + '.join(gparts)} = {wanted:g} GPUs but the cluster has {gpus:g}, so the pipeline would "
            f"hang; lower resources.*.num_gpus or resources.*.actors (0 GPUs runs on CPU), or use a GPU cluster"
        )


def configure_data_context() -> None:
    """Set Ray Data's global context once, before any Dataset is built (later changes are ignored)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = 0  # bad inputs become error rows; a block failure is a bug and must be loud
    ctx.execution_options.preserve_order = False
    if os.environ.get("RAY_DATA_DISABLE_PROGRESS_BARS") == "1":
        ctx.enable_progress_bars = False


def probe_units(units: list[WorkUnit], cfg: LabelConfig, storage_options: dict | None = None) -> list[dict]:
    """Shard descriptors for ``units`` (sorted by video and shard).

    Local files are probed here, in threads (a probe demuxes without decoding: ~0.1 s for a 400-frame local video);
    a separate Ray Dataset for them cost 3–7 s per job on a 2-core machine (issue 13). Remote inputs are probed in
    parallel Ray tasks, where the bytes are, never through the driver.
    """
    import json

    items = [
        {"video_id": u.video_id, "source_uri": u.source_uri, "kind": u.kind, "frames": list(u.frames)} for u in units
    ]
    if all("://" not in u.source_uri for u in units):
        from concurrent.futures import ThreadPoolExecutor

        def probe_one(item: dict) -> list[str]:
            batch = {k: np.array([v] if k != "frames" else [None], dtype=object) for k, v in item.items()}
            batch["frames"][0] = item["frames"]
            return list(probe_batch(batch, cfg.run.shard_frames, storage_options or {})["shard_json"])

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(items)))) as pool:
            shards = [json.loads(s) for out in pool.map(probe_one, items) for s in out]
        return sorted(shards, key=lambda s: (s["video_id"], s["shard_index"]))

    import ray.data

    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        probe_batch,
        batch_size=1,
        num_cpus=cfg.resources.decode_cpus,
        fn_kwargs={"shard_frames": cfg.run.shard_frames, "storage_options": storage_options or {}},
    )
    shards = [json.loads(r["shard_json"]) for r in ds.take_all()]
    return sorted(shards, key=lambda s: (s["video_id"], s["shard_index"]))


def cpu_actor_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the CPU actor pools (detector, SPPE): OpenMP threads that sleep when idle
    (``OMP_WAIT_POLICY=PASSIVE``) unless the driver's environment says otherwise.

    By default PyTorch's OpenMP threads spin after each parallel region. In a Ray job on few cores the network's
    threads share them with decode tasks, Ray's own processes and the driver; a spinning thread takes cycles they
    need, and a preempted one stalls its siblings at the next barrier. The whole job on the Bonn clip ×3
    (FastPose-res50, 2 CPUs, fp32), 3 interleaved rounds: 8.05 vs 7.54 persons/s (medians; per-round ratios 1.09,
    0.98, 1.08).
    """
    env = os.environ if environ is None else environ
    return {"OMP_WAIT_POLICY": env.get("OMP_WAIT_POLICY", "PASSIVE")}


def actor_stage(ds, cls, cfg_obj, res: StageResources, **constructor_kwargs):
    """``ds.map_batches`` through an actor pool of ``cls(cfg=cfg_obj, **constructor_kwargs)`` sized by ``res``."""
    import ray.data

    kwargs = dict(num_cpus=res.num_cpus)
    if res.num_cpus is None or res.actors is None:
        raise ValueError("build_label_dataset needs planned resources: call plan_resources(cfg, cpus) first")
    if res.num_gpus > 0:
        kwargs["num_gpus"] = res.num_gpus
    else:
        kwargs["runtime_env"] = {"env_vars": cpu_actor_env()}
    return ds.map_batches(
        cls,
        fn_constructor_kwargs={"cfg": cfg_obj, **constructor_kwargs},
        batch_size=res.batch_size,
        compute=ray.data.ActorPoolStrategy(size=res.actors),
        **kwargs,
    )


def build_label_dataset(
    shards: list[dict],
    cfg: LabelConfig,
    spec: PublishSpec,
    sppe_stage: type = SPPE,
    sppe_cfg: object | None = None,
):
    """The lazy Dataset whose rows are staged references (one per staged file: ``actors.publish.stage_rows``);
    executing it stages every frame of ``shards``, and ``publish_videos`` of its rows then tracks and publishes.

    ``sppe_stage``/``sppe_cfg`` replace the pose stage's class and its constructor argument (default: ``SPPE`` with
    ``cfg.sppe``); the oracle test substitutes a ground-truth SPPE to measure the rest of the system.
    The driver only hands the stage classes to Ray Data: their modules import torch in the actors that build them,
    never here (``tests/pipelines/test_task_workers.py``).
    """
    import json

    import ray.data

    if any(s.num_cpus is None or s.actors is None for s in (cfg.resources.detect, cfg.resources.sppe)):
        have = ray.cluster_resources()
        cfg = plan_resources(cfg, have.get("CPU", 1.0), have.get("GPU", 0.0))
    r = cfg.resources
    ds = ray.data.from_items([{"shard_json": json.dumps(s)} for s in shards], override_num_blocks=max(1, len(shards)))
    ds = ds.map_batches(
        decode_batch,
        batch_size=1,
        num_cpus=r.decode_cpus,
        fn_kwargs={
            "chunk": cfg.run.decode_chunk,
            "storage_options": spec.storage_options,
            "orb": cfg.tracking.orb_params(),
        },
    )
    # The detector cuts the crops the pose network takes (its crop spec), or hands over its own keypoints.
    detector_keypoints = cfg.sppe.arch == "detector"
    ds = actor_stage(
        ds, Detector, cfg.detector, r.detect, crop=cfg.sppe.crop, keypoints=detector_keypoints, threads=r.detect.threads
    )
    if not detector_keypoints:
        # Crowd association: the SPPE also emits joint candidates (AlphaPose's --matching peaks, top M per joint).
        candidates = cfg.sppe_candidates()
        extra = {"candidates": candidates} if candidates is not None else {}
        sppe_obj = sppe_cfg if sppe_cfg is not None else cfg.sppe
        ds = actor_stage(ds, sppe_stage, sppe_obj, r.sppe, threads=r.sppe.threads, streams=r.sppe.streams, **extra)
    ds = ds.map_batches(
        apply_pose_nms,
        fn_kwargs={"params": cfg.pose_nms, "crowd": cfg.crowd},
        batch_size=r.detect.batch_size,
        num_cpus=r.pose_nms_cpus,
    )
    return ds.map_batches(stage_rows, fn_kwargs={"spec": spec}, batch_size=None, num_cpus=r.pose_nms_cpus)


def publish_videos(refs: list[dict], spec: PublishSpec, num_cpus: float) -> list[dict]:
    """Track and publish each video of ``refs`` (the staged references of a finished ``build_label_dataset``) in
    its own Ray task; returns one summary row per video (``actors.publish.TrackAndPublish``).

    The references are a few small rows per shard, so they are grouped here in the driver instead of through a
    Ray Data ``groupby``: its hash-shuffle map, aggregator actor and reduce added ~7 s of start-up to every job on
    a 2-CPU machine (three serial steps, each waiting for a new worker process), for no work. Tasks, not an actor
    pool: nothing to load, and task workers are reused (an actor would start a process of its own).
    A task killed with its worker is retried by Ray (``max_retries``); publishing is idempotent per video.
    """
    import ray

    by_video: dict[str, list[dict]] = {}
    for r in refs:
        by_video.setdefault(str(r["video_id"]), []).append(r)
    task = ray.remote(publish_video).options(num_cpus=num_cpus)
    futures = [
        task.remote({c: np.array([r[c] for r in rows], dtype=object) for c in rows[0]}, spec)
        for _, rows in sorted(by_video.items())
    ]
    return [{k: _plain(v[0]) for k, v in out.items()} for out in ray.get(futures)]


def _plain(v):
    """A summary cell as a plain Python value (numpy scalars → int/float/bool)."""
    return v.item() if isinstance(v, np.generic) else v


def run_label(
    shards: list[dict],
    cfg: LabelConfig,
    spec: PublishSpec,
    sppe_stage: type = SPPE,
    sppe_cfg: object | None = None,
) -> list[dict]:
    """Label ``shards`` end to end (``build_label_dataset``, then ``publish_videos``); one summary row per video."""
    ds = build_label_dataset(shards, cfg, spec, sppe_stage=sppe_stage, sppe_cfg=sppe_cfg)
    return publish_videos(ds.take_all(), spec, cfg.resources.publish_cpus)
