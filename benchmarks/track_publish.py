"""Memory of the per-video track-and-publish stage as videos get longer: streamed shard by shard vs whole video.

    python -m benchmarks.track_publish [--frames 1024 4096 16384] [--shard-frames 256] [--pairs 2000] [--out PATH]

A synthetic video (6 people walking, COCO-17, ``--pairs`` ORB-like point pairs per frame, as
``tracking.correspondences=orb`` carries them) is staged the way the pipeline stages it (``stage_rows`` on
16-frame pieces, shards of ``--shard-frames``). Then ``TrackAndPublish`` (PoseFlow released mode + both tables)
runs in a fresh subprocess per measurement, which reports its peak RSS above its RSS after imports:

* ``streamed``: the pipeline's stage as it is, reading one shard at a time;
* ``whole video``: the same code handed every staged file as one shard, i.e. holding the whole video at once, as
  a ``groupby("video_id")`` over the pose rows would (the design this replaced).

The streamed peak should stay flat as the video grows; the whole-video peak grows with it. Prints a table and
writes ``benchmarks/results/track_publish.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import write_result

__all__ = ["main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "track_publish.json"
PEOPLE, K, W, H = 6, 17, 1280, 720


def _piece(frames: np.ndarray, shard: int, n_frames: int, pairs: int, rng) -> dict[str, np.ndarray]:
    from actors.common import ragged
    from store.schema import CORR_PAIRS

    n = len(frames)
    base = np.stack([np.linspace(100, W - 100, PEOPLE), np.full(PEOPLE, H / 2)], axis=1)  # [P, 2]
    offsets = rng.normal(0, 40, (PEOPLE, K, 2))
    kps, boxes = [], []
    for f in frames:
        centre = base + np.stack([30 * np.sin(f / 50 + np.arange(PEOPLE)), 20 * np.cos(f / 70 + np.arange(PEOPLE))], 1)
        kp = (centre[:, None, :] + offsets + rng.normal(0, 2, (PEOPLE, K, 2))).astype(np.float32)
        kps.append(kp)
        boxes.append(np.concatenate([kp.min(1), kp.max(1)], 1))
    corr = [
        np.column_stack(
            [rng.integers(0, W, pairs), rng.integers(0, H, pairs), rng.integers(0, W, pairs), rng.integers(0, H, pairs)]
        ).astype(np.int16)
        for _ in frames
    ]
    return {
        "video_id": np.array(["long"] * n, dtype=object),
        "unit_uri": np.array(["/in/long.mp4"] * n, dtype=object),
        "source_uri": np.array(["/in/long.mp4"] * n, dtype=object),
        "shard_index": np.full(n, shard, np.int64),
        "num_frames": np.full(n, n_frames, np.int64),
        "frame_index": frames.astype(np.int64),
        "timestamp_s": frames / 30.0,
        "image_width": np.full(n, W, np.int32),
        "image_height": np.full(n, H, np.int32),
        "error": np.array([""] * n, dtype=object),
        "stage": np.array([""] * n, dtype=object),
        "detector": np.array(["synthetic"] * n, dtype=object),
        "detector_weights": np.array(["random"] * n, dtype=object),
        "n_persons": np.full(n, PEOPLE, np.int32),
        "boxes_xyxy": ragged(boxes),
        "box_scores": ragged([np.ones(PEOPLE, np.float32)] * n),
        "keypoints": ragged(kps),
        "keypoint_scores": ragged([np.full((PEOPLE, K), 0.9, np.float32)] * n),
        "pose_scores": ragged([np.full(PEOPLE, 2.0, np.float32)] * n),
        "correspondences": ragged(corr),
        "correspondence_kind": np.full(n, CORR_PAIRS, np.int8),
    }


def _spec(out: str):
    from actors.publish import PublishSpec
    from models.poseflow import PoseFlowParams

    return PublishSpec(
        output=out,
        run_id="bench",
        config_hash="bench",
        fingerprints={},
        keypoint_set="coco17",
        sppe="synthetic",
        sppe_sha256="random",
        random_weights=True,
        tracking=PoseFlowParams(),
    )


def _stage(out: str, n_frames: int, shard_frames: int, pairs: int) -> dict[str, list]:
    from actors.publish import stage_rows

    rng = np.random.default_rng(0)
    spec = _spec(out)
    refs: dict[str, list] = {}
    for start in range(0, n_frames, 16):
        frames = np.arange(start, min(start + 16, n_frames))
        r = stage_rows(_piece(frames, start // shard_frames, n_frames, pairs, rng), spec)
        for c, v in r.items():
            refs.setdefault(c, []).extend(v.tolist())
    return refs


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _child(refs_path: str, out: str, whole: bool) -> None:
    from actors.publish import TrackAndPublish

    refs = json.loads(Path(refs_path).read_text())
    spec = _spec(out)
    publish = TrackAndPublish(spec)
    batch = {c: np.array(v, dtype=object if isinstance(v[0], str) else np.int64) for c, v in refs.items()}
    if whole:
        batch["shard_index"] = np.zeros_like(batch["shard_index"])  # every file in one read: the whole video
    base = _rss_mb()
    t0 = time.perf_counter()
    summary = publish(batch)
    seconds = time.perf_counter() - t0
    assert summary["published"][0], summary["errors_json"][0]
    print(
        json.dumps(
            {"peak_above_imports_mb": _rss_mb() - base, "seconds": seconds, "persons": int(summary["num_persons"][0])}
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.track_publish", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--shard-frames", type=int, default=256)
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--child", nargs=3, metavar=("REFS", "OUT", "WHOLE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], args.child[2] == "1")
        return 0
    rows = []
    for n in args.frames:
        row: dict = {"frames": n}
        for name, whole in (("streamed", "0"), ("whole_video", "1")):
            with tempfile.TemporaryDirectory() as tmp:  # staged afresh: publishing deletes the staged files
                refs = _stage(tmp, n, args.shard_frames, args.pairs)
                row["staged_files"] = len(refs["staged_uri"])
                row["staged_mb"] = sum(os.path.getsize(u) for u in refs["staged_uri"]) / 2**20
                Path(tmp, "refs.json").write_text(json.dumps(refs))
                # a fresh process per measurement: ru_maxrss is a process-lifetime peak
                res = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.track_publish",
                        "--child",
                        str(Path(tmp, "refs.json")),
                        tmp,
                        whole,
                    ],
                    capture_output=True,
                    text=True,
                )
                if res.returncode != 0:
                    raise RuntimeError(f"{name} run failed:\n{res.stderr[-3000:]}")
                r = json.loads(res.stdout.strip().splitlines()[-1])
                row[f"{name}_peak_mb"] = r["peak_above_imports_mb"]
                row[f"{name}_ms_per_frame"] = 1000 * r["seconds"] / n
        rows.append(row)
        print(
            f"{n:>7} frames  staged {row['staged_mb']:7.1f} MB in {row['staged_files']:5d} files  "
            f"peak streamed {row['streamed_peak_mb']:7.1f} MB  whole video {row['whole_video_peak_mb']:7.1f} MB"
            f"  ms/frame {row['streamed_ms_per_frame']:.2f} / {row['whole_video_ms_per_frame']:.2f}"
        )
    write_result(
        {
            "benchmark": "track_publish",
            "shard_frames": args.shard_frames,
            "pairs_per_frame": args.pairs,
            "people": PEOPLE,
            "rows": rows,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
