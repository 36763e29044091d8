"""Commit markers: ``<output>/_manifest/<video_id>.json`` says a video's tables are published and by which run.

The per-video stage writes a video's keypoint table, then its frames table, then this marker, each atomically
(``store.writers``): **the marker is the commit point**. A crash before it leaves at most tables that the next
attempt overwrites; a video without a marker is processed again. Resume reads the markers before the pipeline is
built and skips every video whose marker matches the current config hash and input fingerprint. (Ray Data's own
``write_parquet`` names files per write task and offers no per-video commit:
https://docs.ray.io/en/latest/data/api/doc/ray.data.Dataset.write_parquet.html.)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import fsspec

from store.writers import join_uri, put_atomic, read_json_folder

__all__ = ["Manifest", "write_manifest", "read_manifest", "read_manifests"]


@dataclass(frozen=True)
class Manifest:
    """The commit marker of one published video."""

    video_id: str
    source_uri: str
    fingerprint: str
    config_hash: str
    run_id: str
    num_frames: int
    num_persons: int
    num_errors: int
    files: tuple[str, ...]
    random_weights: bool


def write_manifest(output: str, manifest: Manifest, storage_options: dict | None = None) -> None:
    """Publish ``manifest`` atomically as ``<output>/_manifest/<video_id>.json`` (commits the video)."""
    body = json.dumps(asdict(manifest), indent=1, sort_keys=True).encode()
    put_atomic(body, join_uri(output, "_manifest", f"{manifest.video_id}.json"), storage_options)


def read_manifest(output: str, video_id: str, storage_options: dict | None = None) -> Manifest | None:
    """One video's commit marker, or None when it has none (or an unreadable one)."""
    fs, path = fsspec.core.url_to_fs(join_uri(output, "_manifest", f"{video_id}.json"), **(storage_options or {}))
    fs.invalidate_cache(os.path.dirname(path))
    try:
        with fs.open(path, "rb") as f:
            d = json.load(f)
        d["files"] = tuple(d.get("files", ()))
        return Manifest(**d)
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


def read_manifests(output: str, storage_options: dict | None = None) -> dict[str, Manifest]:
    """All commit markers under ``output`` (an empty dict when there are none or the folder does not exist)."""
    out = {}
    for d in read_json_folder(join_uri(output, "_manifest"), storage_options):
        try:
            d["files"] = tuple(d.get("files", ()))
            m = Manifest(**d)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # an unreadable marker is no commit: the video is processed again
        out[m.video_id] = m
    return out
