"""The pipeline's last two stages: stage each frame row, then per video track and publish it atomically.

``stage_rows`` (a ``map_batches`` task after pose NMS) writes the rows to the staging area (``store.staging``) and
returns small references. ``TrackAndPublish`` (``publish_video`` in one Ray task per video, after
``pipelines.label.publish_videos`` grouped the references in the driver) hands one video's references to
``store.video_publish.publish_staged_video``, which reads the staged shards one at a time in frame order, runs
PoseFlow (``models.video_tracking``) and publishes the keypoint and frames tables and the commit marker.
This module only adapts that to Ray: the run's settings arrive as one picklable
``PublishSpec``, and the result leaves as a one-row summary batch.

Every exception inside is caught and turned into the video's error summary: one bad video never fails the others
of its chunk. Each error carries its kind (``store.video_publish.error_kind``): frame errors are the
input's; a failure to publish with an I/O or memory error (a full disk, a lost object store) is the
infrastructure's, which makes ``jobs.label`` exit 3. Clean-up removes this run's staged rows and orphans of runs
without a live lease, never another live run's (``store.staging.remove_staging``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np

from models.poseflow import PoseFlowParams
from store.staging import remove_staging, write_staged
from store.video_publish import VideoSummary, committed_summary, failed_summary, publish_staged_video

logger = logging.getLogger(__name__)

__all__ = ["PublishSpec", "stage_rows", "TrackAndPublish", "publish_video"]

_REF_COLUMNS = ("video_id", "unit_uri", "shard_index", "staged_uri", "num_rows")


@dataclass(frozen=True, kw_only=True)
class PublishSpec:
    """What the per-video stage needs to know about the run (plain data, pickled to the actors)."""

    output: str
    run_id: str
    config_hash: str
    fingerprints: dict[str, str]  # video_id → input fingerprint
    keypoint_set: str
    sppe: str
    sppe_sha256: str
    random_weights: bool
    config: dict = field(default_factory=dict)
    storage_options: dict = field(default_factory=dict)
    tracking: PoseFlowParams | None = None  # None: no tracking (track_id stays null)


def stage_rows(batch: dict[str, np.ndarray], spec: PublishSpec) -> dict[str, np.ndarray]:
    """``map_batches`` task: write a batch of frame rows to the staging area; one reference row per file written."""
    refs = write_staged(batch, spec.output, spec.run_id, spec.storage_options)
    return {
        c: np.array([r[c] for r in refs], dtype=object if c in ("video_id", "unit_uri", "staged_uri") else np.int64)
        for c in _REF_COLUMNS
    }


class TrackAndPublish:
    """``__init__`` keeps the run spec; ``__call__`` handles one video's staged references, returns its summary."""

    def __init__(self, spec: PublishSpec) -> None:
        self.spec = spec

    def __call__(self, refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.spec
        video_id = str(refs["video_id"][0])
        uri = str(refs["unit_uri"][0])
        try:
            staged: dict[int, list[str]] = {}  # shard index → staged files
            for s, u in zip(refs["shard_index"], refs["staged_uri"]):
                staged.setdefault(int(s), []).append(str(u))
            summary = publish_staged_video(
                video_id,
                uri,
                staged,
                output=spec.output,
                run_id=spec.run_id,
                config_hash=spec.config_hash,
                fingerprint=spec.fingerprints.get(video_id, ""),
                keypoint_set=spec.keypoint_set,
                sppe=spec.sppe,
                sppe_sha256=spec.sppe_sha256,
                random_weights=spec.random_weights,
                config=spec.config,
                tracking=spec.tracking,
                storage_options=spec.storage_options,
            )
        except FileNotFoundError as e:  # staged files gone: a retry of an attempt that committed, or a failure
            summary = committed_summary(
                spec.output, video_id, spec.run_id, spec.config_hash, spec.storage_options
            ) or self._failed(video_id, uri, e)
        except Exception as e:  # a bad video becomes an error summary; the other videos go on
            summary = self._failed(video_id, uri, e)
        try:
            remove_staging(spec.output, video_id, spec.storage_options, run_id=spec.run_id)
        except Exception:  # leftovers cost space, never correctness: staged files are only read by reference
            logger.warning("could not remove the staged rows of %s", video_id, exc_info=True)
        return {
            "video_id": np.array([video_id], dtype=object),
            "source_uri": np.array([uri], dtype=object),
            "published": np.array([summary.published]),
            "num_frames": np.array([summary.num_frames], np.int64),
            "num_persons": np.array([summary.num_persons], np.int64),
            "num_errors": np.array([len(summary.errors)], np.int64),
            "errors_json": np.array([json.dumps(summary.errors)], dtype=object),
            "stage_seconds_json": np.array([json.dumps(summary.seconds)], dtype=object),
        }

    @staticmethod
    def _failed(video_id: str, uri: str, e: Exception) -> VideoSummary:
        logger.error("publishing %s failed", video_id, exc_info=e)
        return failed_summary(video_id, uri, e)


def publish_video(refs: dict[str, np.ndarray], spec: PublishSpec) -> dict[str, np.ndarray]:
    """Function form of ``TrackAndPublish`` (``pipelines.label.publish_videos`` runs it as a Ray task per video)."""
    return TrackAndPublish(spec)(refs)
