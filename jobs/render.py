"""Render labelled poses over their source media: mp4 previews for videos, PNG/JPEG for image folders.

    python -m jobs.render --output OUT_FOLDER --dest DIR [--video-id ID ...] [--sample N] [--max-frames N]
                          [--min-score S] [--boxes] [--image-format png|jpg]

Reads the published keypoint table of ``--output`` (``poses/``, hive-partitioned by ``video_id``), decodes each
selected video's frames again (PyAV) or reads its images, draws skeletons coloured per track with ids
(``models.render``), and writes ``<dest>/<video_id>.mp4`` (source frame rate) or ``<dest>/<video_id>/<frame>.png``.
Runs whose weights were random are labelled "RANDOM WEIGHTS" in every frame. Exit codes: 0, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "render_video"]


def _poses(output: str, video_ids: list[str] | None):
    """The output's keypoint rows as pandas (``video_id`` a plain string) and whether any weights were random."""
    from store.tables import load_output

    tables = load_output(output, video_ids)
    return tables.poses.to_pandas(), tables.random_weights


def _frames_of_video(uri: str, wanted: set[int]):
    """Yield (frame_index, rgb, fps) for the wanted frames of a video, in order (frame i = i-th smallest pts)."""
    from pipelines.decode import decode_shard, plan_shards, probe_video
    from store.sources import WorkUnit

    probe = probe_video(uri)
    fps = 10.0
    if probe.pts is not None and len(probe.pts) > 1:
        fps = float(1.0 / (np.median(np.diff(probe.pts)) * probe.time_base))
    unit = WorkUnit(video_id="render", source_uri=uri, kind="video", fingerprint="")
    last = max(wanted)
    for shard in plan_shards(unit, probe.num_frames, probe):
        for batch in decode_shard(shard, chunk=8):
            for i, frame in zip(batch["frame_index"], batch["frame"]):
                if int(i) in wanted:
                    yield int(i), frame, fps
                if int(i) >= last:
                    return


def _write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        for img in frames:
            img = np.ascontiguousarray(img[: stream.height, : stream.width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def render_video(
    df, dest: Path, *, max_frames: int, min_score: float, boxes: bool, label: str | None, image_format: str
) -> list[Path]:
    """Render one video's rows (``df`` holds a single video_id); returns the files written."""
    import cv2

    from models.keypoints import get_keypoint_set
    from models.render import draw_poses

    vid = str(df["video_id"].iloc[0])
    kset = get_keypoint_set(str(df["keypoint_set"].iloc[0]))
    by_frame = {int(f): g for f, g in df.groupby("frame_index")}
    uris = df.groupby("frame_index")["source_uri"].first().to_dict()
    is_video = len(set(uris.values())) == 1 and Path(next(iter(uris.values()))).suffix.lower() in (
        ".mp4",
        ".mov",
        ".mkv",
        ".avi",
        ".webm",
    )

    def draw(i: int, rgb: np.ndarray) -> np.ndarray:
        g = by_frame.get(i)
        if g is None:
            return draw_poses(
                rgb, np.zeros((0, kset.num_keypoints, 2)), np.zeros((0, kset.num_keypoints)), kset, label=label
            )
        kps = np.stack([np.asarray([np.asarray(p) for p in k]) for k in g["keypoints"]])
        sc = np.stack([np.asarray(s) for s in g["keypoint_scores"]])
        tids = g["track_id"].fillna(0).astype(int).to_numpy()
        bx = np.stack([np.asarray(b) for b in g["box_xyxy"]]) if boxes else None
        return draw_poses(rgb, kps, sc, kset, track_ids=tids, boxes_xyxy=bx, min_score=min_score, label=label)

    written: list[Path] = []
    if is_video:
        uri = next(iter(uris.values()))
        from pipelines.decode import probe_video

        n = probe_video(uri).num_frames
        wanted = set(range(min(n, max_frames)))
        frames, fps = [], 10.0
        for i, rgb, _fps in _frames_of_video(uri, wanted):
            frames.append(draw(i, rgb))
        path = dest / f"{vid}.mp4"
        _write_mp4(path, frames, fps)
        cv2.imwrite(
            str(dest / f"{vid}_frame{len(frames) // 2:06d}.png"),
            cv2.cvtColor(frames[len(frames) // 2], cv2.COLOR_RGB2BGR),
        )
        written += [path, dest / f"{vid}_frame{len(frames) // 2:06d}.png"]
    else:
        import fsspec

        folder = dest / vid
        folder.mkdir(parents=True, exist_ok=True)
        for i in sorted(uris)[:max_frames]:
            with fsspec.open(uris[i], "rb") as f:
                bgr = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            img = draw(i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            path = folder / f"{Path(uris[i]).stem}.{image_format}"
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.render", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="a jobs.label output folder")
    p.add_argument("--dest", required=True, help="where to write renders")
    p.add_argument("--video-id", nargs="*", default=None, help="videos to render (default: all, or --sample)")
    p.add_argument("--sample", type=int, default=0, help="render only the first N videos (sorted ids)")
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--min-score", type=float, default=0.0, help="hide keypoints scored below this")
    p.add_argument("--boxes", action="store_true", help="outline detector boxes")
    p.add_argument("--image-format", choices=("png", "jpg"), default="png")
    args = p.parse_args(argv)
    if not Path(args.output, "poses").exists() and "://" not in args.output:
        print(f"error: {args.output} has no poses/ table (is it a jobs.label output folder?)", file=sys.stderr)
        return 2
    df, random = _poses(args.output, args.video_id)
    if df.empty:
        print(f"error: no rows to render in {args.output} for {args.video_id or 'any video'}", file=sys.stderr)
        return 2
    ids = sorted(df["video_id"].unique())
    if args.sample:
        ids = ids[: args.sample]
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    label = "RANDOM WEIGHTS - not pose estimates" if random else None
    written = []
    for vid in ids:
        written += render_video(
            df[df["video_id"] == vid],
            dest,
            max_frames=args.max_frames,
            min_score=args.min_score,
            boxes=args.boxes,
            label=label,
            image_format=args.image_format,
        )
    print(json.dumps({"rendered_videos": len(ids), "files": [str(w) for w in written]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
