"""The online endpoint as a Ray Serve application: the batch pipeline's stages, bound as deployments.

``build_app`` is the design's shape sentence for one image at a time::

    HTTP ─PoseAPI (ingress: limits, decode)─DetectorReplica (batched)─SPPEReplica (batched)─pose NMS─JSON/PNG

with the same ``detector`` / ``sppe`` / ``pose_nms`` / ``crowd`` sections as ``jobs.label`` (one YAML drives both)
and ``serve`` for replicas, batching and limits (``pipelines.label.ServeConfig``). The stage classes are the batch
pipeline's own (``actors.detect.Detector``, ``actors.sppe.SPPE``, ``actors.pose_nms.apply_pose_nms``).
"""

from __future__ import annotations

from actors.serve import DetectorReplica, PoseAPI, SPPEReplica, replica_threads
from pipelines.label import LabelConfig, cpu_actor_env

__all__ = ["build_app", "ingress_settings", "check_serve_config", "APP_NAME"]

APP_NAME = "raypose"


def check_serve_config(cfg: LabelConfig) -> None:
    """Refuse what cannot answer online (before Ray starts): precomputed detections are looked up by frame key,
    which an uploaded image does not have."""
    if cfg.detector.arch == "precomputed":
        raise ValueError(
            "jobs.serve: detector.arch=precomputed reads boxes from a detections file by frame key; an uploaded "
            "image has none. Use a detector network (e.g. detector.arch=yolo with weights/yolo11n-pose.pt)"
        )


def ingress_settings(cfg: LabelConfig, sppe_sha256: str, effective: dict) -> dict:
    """What the ingress needs besides the stage handles (plain data, pickled to its replicas)."""
    s = cfg.serve
    return {
        "keypoint_set": cfg.sppe.keypoint_set,
        "pose_nms": cfg.pose_nms,
        "crowd": cfg.crowd,
        "detector_arch": cfg.detector.arch,
        "sppe_arch": cfg.sppe.arch,
        "sppe_sha256": sppe_sha256,
        "max_request_bytes": s.max_request_bytes,
        "max_image_pixels": s.max_image_pixels,
        "token_env": s.token_env,
        "config": {k: effective[k] for k in ("detector", "sppe", "pose_nms", "serve") if k in effective},
    }


def _stage(cls, name: str, replicas: int, num_cpus: float, num_gpus: float, max_batch: int):
    """A stage deployment of ``cls``: its replicas and resources, OpenMP threads that sleep when idle on CPU, and
    room for a whole batch per replica (or Serve's batching never fills it)."""
    from ray import serve

    actor = {"num_cpus": num_cpus}
    if num_gpus > 0:
        actor["num_gpus"] = num_gpus
    else:
        actor["runtime_env"] = {"env_vars": cpu_actor_env()}
    return serve.deployment(cls).options(
        name=name, num_replicas=replicas, ray_actor_options=actor, max_ongoing_requests=2 * max_batch
    )


def build_app(cfg: LabelConfig, sppe_sha256: str, effective: dict):
    """The bound Serve application (``serve.run(build_app(...))``): ingress → detector → SPPE → pose NMS.

    Args:
        cfg: the same config ``jobs.label`` takes (its ``serve`` section sizes the deployments).
        sppe_sha256: the pose network's weights digest as the driver read it ("random" marks every answer).
        effective: the effective config as plain data (``/v1/models`` shows it).
    """
    from ray import serve

    check_serve_config(cfg)
    s = cfg.serve
    detector_keypoints = cfg.sppe.arch == "detector"
    det = _stage(
        DetectorReplica, "detector", s.detect_replicas, s.detect_num_cpus, s.detect_num_gpus, s.detect_max_batch
    ).bind(
        cfg.detector,
        None if detector_keypoints else cfg.sppe.crop,
        detector_keypoints,
        replica_threads(s.detect_num_cpus, s.threads),
        s.detect_max_batch,
        s.batch_wait_timeout_s,
    )
    sppe = None
    if not detector_keypoints:
        candidates = cfg.sppe_candidates()
        sppe = _stage(SPPEReplica, "sppe", s.sppe_replicas, s.sppe_num_cpus, s.sppe_num_gpus, s.sppe_max_batch).bind(
            cfg.sppe, replica_threads(s.sppe_num_cpus, s.threads), candidates, s.sppe_max_batch, s.batch_wait_timeout_s
        )
    return (
        serve.deployment(PoseAPI)
        .options(
            name="api",
            num_replicas=s.ingress_replicas,
            max_ongoing_requests=s.max_ongoing_requests,
            max_queued_requests=s.max_queued_requests,
            ray_actor_options={"num_cpus": 0.25},
        )
        .bind(det, sppe, ingress_settings(cfg, sppe_sha256, effective))
    )
