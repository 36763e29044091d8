"""Make sample media with known ground truth: a short H.264 video of walking stick figures, plus its annotations.

    python -m jobs.make_sample --out samples/ [--frames 48] [--persons 3] [--size 640x360] [--fps 12] [--seed 0]

Writes ``<out>/walkers.mp4``, ``<out>/walkers_gt.json`` and ``<out>/walkers_dets.json`` (person boxes as a
detector would give them: jittered ground truth plus duplicates, for runs with precomputed detections).
The JSON is COCO keypoints format extended for video
(as PoseTrack's COCO-style files): ``images`` have ``file_name`` ``"<frame_index>.jpg"``, ``frame_index`` and
``video_id``; ``annotations`` have COCO-17 ``keypoints`` (x, y, v), ``bbox`` (x, y, w, h) and a 1-based
``track_id``. Figures cross each other, so tracking has real work to do.

Each frame also carries its index as a 16-bit bar code in the top-left corner (16 blocks of 8×8 px, white = 1,
least significant bit first), so decoding tests can check that frame ``i`` really is frame ``i`` after sharding.
The video is encoded with B-frames and a short GOP to make seeking non-trivial.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "make_walkers", "read_barcode", "BARCODE_BITS"]

BARCODE_BITS = 16
_BLOCK = 8

# A standing COCO-17 figure in a unit box (x right, y down; height 1): nose, eyes, ears, shoulders, elbows,
# wrists, hips, knees, ankles.
_TEMPLATE = np.array(
    [
        [0.00, 0.08],
        [-0.03, 0.06],
        [0.03, 0.06],
        [-0.06, 0.07],
        [0.06, 0.07],
        [-0.12, 0.20],
        [0.12, 0.20],
        [-0.16, 0.36],
        [0.16, 0.36],
        [-0.17, 0.50],
        [0.17, 0.50],
        [-0.08, 0.52],
        [0.08, 0.52],
        [-0.09, 0.75],
        [0.09, 0.75],
        [-0.10, 0.97],
        [0.10, 0.97],
    ]
)
_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16))


def _pose(t: float, phase: float) -> np.ndarray:
    """Template with swinging arms and legs at time ``t`` (seconds)."""
    p = _TEMPLATE.copy()
    s = np.sin(2 * np.pi * 1.2 * t + phase)
    p[[7, 9], 0] += np.array([0.05, 0.10]) * s  # left arm
    p[[8, 10], 0] -= np.array([0.05, 0.10]) * s  # right arm
    p[[13, 15], 0] += np.array([0.06, 0.12]) * s
    p[[14, 16], 0] -= np.array([0.06, 0.12]) * s
    return p


def make_walkers(frames: int, persons: int, width: int, height: int, fps: int, seed: int):
    """Render the frames (uint8 RGB ``[T, H, W, 3]``) and their ground truth (per frame: keypoints ``[P, 17, 2]``)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack(
        [90 + 40 * np.sin(xx / 37.0), 110 + 30 * np.cos(yy / 23.0), 100 + 20 * np.sin((xx + yy) / 51.0)], axis=-1
    ).astype(np.uint8)
    colours = [(230, 60, 60), (60, 200, 80), (70, 110, 240), (240, 200, 40), (200, 70, 220), (40, 220, 220)]
    heights = rng.uniform(0.55, 0.8, persons) * height
    starts = rng.uniform(0.1, 0.9, persons) * width
    speeds = rng.choice([-1, 1], persons) * rng.uniform(0.15, 0.35, persons) * width / max(frames / fps, 1e-6)
    base_y = rng.uniform(0.05, 0.15, persons) * height
    phases = rng.uniform(0, 2 * np.pi, persons)
    video = np.empty((frames, height, width, 3), np.uint8)
    truth = np.zeros((frames, persons, 17, 2))
    for f in range(frames):
        t = f / fps
        img = background.copy()
        for p in range(persons):
            cx = starts[p] + speeds[p] * t
            cx = abs(cx) % (2 * width)
            cx = 2 * width - cx if cx > width else cx  # bounce off the borders
            pts = _pose(t, phases[p]) * heights[p] + np.array([cx, base_y[p]])
            truth[f, p] = pts
            thick = max(2, int(heights[p] / 40))
            for a, b in _LIMBS:
                cv2.line(
                    img,
                    tuple(int(round(v)) for v in pts[a]),
                    tuple(int(round(v)) for v in pts[b]),
                    colours[p % len(colours)],
                    thick,
                    cv2.LINE_AA,
                )
            cv2.circle(
                img,
                tuple(int(round(v)) for v in pts[0]),
                int(heights[p] * 0.07),
                colours[p % len(colours)],
                -1,
                cv2.LINE_AA,
            )
        for bit in range(BARCODE_BITS):
            img[0:_BLOCK, bit * _BLOCK : (bit + 1) * _BLOCK] = 255 if (f >> bit) & 1 else 0
        video[f] = img
    return video, truth


def read_barcode(frame: np.ndarray) -> int:
    """The frame index written by ``make_walkers`` (robust to compression: block means against mid-grey)."""
    bits = [frame[2 : _BLOCK - 2, b * _BLOCK + 2 : (b + 1) * _BLOCK - 2].mean() > 127 for b in range(BARCODE_BITS)]
    return int(sum(1 << i for i, on in enumerate(bits) if on))


def _write_video(path: Path, video: np.ndarray, fps: int) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "8", "bf": "2", "crf": "18", "preset": "veryfast"}
        for img in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _ground_truth(truth: np.ndarray, width: int, height: int, video_name: str) -> dict:
    from models.keypoints import COCO_17

    images, annotations = [], []
    for f in range(truth.shape[0]):
        images.append(
            {
                "id": f + 1,
                "file_name": f"{f}.jpg",
                "frame_index": f,
                "video_id": video_name,
                "width": width,
                "height": height,
            }
        )
        for p in range(truth.shape[1]):
            k = truth[f, p]
            inside = (k[:, 0] >= 0) & (k[:, 0] < width) & (k[:, 1] >= 0) & (k[:, 1] < height)
            kp = np.concatenate([k, np.where(inside, 2, 0)[:, None]], axis=1)
            kp[~inside, :2] = 0
            if not inside.any():
                continue
            x0, y0 = k[inside].min(0)
            x1, y1 = k[inside].max(0)
            pad = 0.08 * (y1 - y0)
            x0, y0 = max(0.0, x0 - pad), max(0.0, y0 - pad)
            x1, y1 = min(float(width), x1 + pad), min(float(height), y1 + pad)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": f + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "track_id": p + 1,
                    "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                    "num_keypoints": int(inside.sum()),
                    "bbox": [round(float(v), 3) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "area": float((x1 - x0) * (y1 - y0)),
                }
            )
    return {
        "info": {"description": "raypose synthetic walkers (jobs.make_sample)"},
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(COCO_17.names),
                "skeleton": [[a + 1, b + 1] for a, b in COCO_17.skeleton],
            }
        ],
        "images": images,
        "annotations": annotations,
    }


def _detections(gt: dict, seed: int) -> list[dict]:
    """Person detections as a detector would give them: ground-truth boxes jittered by a few percent, plus one
    lower-scored duplicate per person (what pose NMS exists for). COCO results format, ``image_id`` =
    ``"<frame_index>.jpg"`` (AlphaPose's video frame naming, matched by ``models.detections_io``)."""
    rng = np.random.default_rng(seed + 1)
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    out = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        for score, jitter in ((0.95, 0.03), (0.6, 0.08)):
            dx, dy, dw, dh = rng.normal(0, jitter, 4) * np.array([w, h, w, h])
            out.append(
                {
                    "image_id": names[a["image_id"]],
                    "category_id": 1,
                    "score": score,
                    "bbox": [round(float(v), 2) for v in (x + dx, y + dy, max(w + dw, 2.0), max(h + dh, 2.0))],
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.make_sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--persons", type=int, default=3)
    p.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (even numbers)")
    p.add_argument("--fps", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size must look like 640x360, got {args.size!r}")
    if width % 2 or height % 2 or width < 16 * _BLOCK or height < 32:
        p.error(f"--size {args.size}: width and height must be even, width ≥ {16 * _BLOCK}, height ≥ 32")
    if not (1 <= args.frames < 2**BARCODE_BITS) or not (1 <= args.persons <= 6) or args.fps < 1:
        p.error("--frames must be in [1, 65535], --persons in [1, 6], --fps ≥ 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video, truth = make_walkers(args.frames, args.persons, width, height, args.fps, args.seed)
    _write_video(out / "walkers.mp4", video, args.fps)
    gt = _ground_truth(truth, width, height, "walkers.mp4")
    (out / "walkers_gt.json").write_text(json.dumps(gt))
    (out / "walkers_dets.json").write_text(json.dumps(_detections(gt, args.seed)))
    print(
        f"wrote {out / 'walkers.mp4'} ({args.frames} frames, {args.persons} persons, {width}x{height} @ {args.fps} fps)"
    )
    print(f"wrote {out / 'walkers_gt.json'} (ground truth) and {out / 'walkers_dets.json'} (jittered GT boxes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
