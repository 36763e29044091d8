"""Rotated videos (a display matrix, as phones write) decode in displayed orientation, with the rotation recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.decode import decode_shard, plan_shards, probe_video
from store.schema import KEYPOINT_SCHEMA, keypoint_table
from store.sources import list_inputs

W, H, N = 64, 32, 6  # stored size: wide, so a quarter turn shows in the shape


def _stored_frames(n: int = N, w: int = W, h: int = H) -> np.ndarray:
    """uint8 [n, h, w, 3]: blocky noise panning right 2 px a frame (corners ORB can match from frame to frame), with a
    bright 8×8 square in the stored top-left corner."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 160, (h // 4, w // 4, 3), dtype=np.uint8).repeat(4, axis=0).repeat(4, axis=1)
    base = np.stack([np.roll(noise, 2 * i, axis=1) for i in range(n)])
    base[:, :8, :8] = 255
    return base


def _write(path: Path, rotation_cw: int, w: int = W, h: int = H) -> None:
    """An H.264 mp4 whose display matrix says: turn the stored frames ``rotation_cw`` degrees clockwise to show them.

    PyAV's ``set_display_rotation`` takes the display matrix's counter-clockwise angle (what
    ``av_display_rotation_get`` and ``VideoFrame.rotation`` read back, and ``ffprobe`` prints as "rotation of -90.00
    degrees" for a phone's portrait video, whose legacy ``rotate`` tag was 90), hence the minus sign.
    """
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12, options={"crf": "10", "g": "3", "bf": "1"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.set_display_rotation(-rotation_cw)
        for img in _stored_frames(N, w, h):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _raw_frames(path: Path) -> list[np.ndarray]:
    """The frames as stored (no rotation applied): the oracle the decoded frames are compared with."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _rows(path: Path, shard_frames: int, orb=None) -> list[dict]:
    (unit,) = list_inputs([str(path)])
    probe = probe_video(unit.source_uri)
    rows = []
    for shard in plan_shards(unit, shard_frames, probe):
        for b in decode_shard(shard, chunk=4, orb=orb):
            rows += [{k: b[k][i] for k in b} for i in range(len(b["frame_index"]))]
    return sorted(rows, key=lambda r: int(r["frame_index"]))


# rotation_cw → where the stored top-left square is seen, as ffmpeg's autorotate shows it (fftools
# ffmpeg_filter.c: theta = -av_display_rotation_get(matrix); 90 → transpose=clock, 180 → hflip+vflip,
# 270 → transpose=cclock), and the np.rot90 turn (k > 0: counter-clockwise) that gives the displayed frame.
CASES = {0: ("top-left", 0), 90: ("top-right", -1), 180: ("bottom-right", 2), 270: ("bottom-left", 1)}


def _bright_corner(img: np.ndarray) -> str:
    h, w = img.shape[:2]
    means = {
        "top-left": img[:8, :8].mean(),
        "top-right": img[:8, w - 8 :].mean(),
        "bottom-left": img[h - 8 :, :8].mean(),
        "bottom-right": img[h - 8 :, w - 8 :].mean(),
    }
    return max(means, key=means.get)


@pytest.mark.parametrize("rotation_cw", [0, 90, 180, 270])
def test_rotated_video_decodes_as_displayed(tmp_path, rotation_cw):
    path = tmp_path / f"phone_{rotation_cw}.mp4"
    _write(path, rotation_cw)
    corner, k = CASES[rotation_cw]
    raw = _raw_frames(path)
    assert len(raw) == N and raw[0].shape == (H, W, 3) and _bright_corner(raw[0]) == "top-left"

    probe = probe_video(str(path))
    shown_wh = (H, W) if rotation_cw in (90, 270) else (W, H)
    assert (probe.width, probe.height) == shown_wh and probe.rotation == rotation_cw

    rows = _rows(path, shard_frames=4)  # two shards: the second one seeks
    assert [int(r["frame_index"]) for r in rows] == list(range(N)) and all(r["error"] == "" for r in rows)
    for r, stored in zip(rows, raw):
        np.testing.assert_array_equal(r["frame"], np.rot90(stored, k))
        assert _bright_corner(r["frame"]) == corner
        assert (int(r["image_width"]), int(r["image_height"])) == shown_wh
        assert int(r["rotation"]) == rotation_cw


def test_correspondences_of_a_rotated_video_are_in_displayed_pixels(tmp_path):
    """The leading frame a later shard decodes for ORB only is turned too, so pairs across a shard boundary equal
    those of a single pass."""
    from models.correspondences import OrbParams

    path = tmp_path / "phone.mp4"
    _write(path, 90, w=192, h=96)  # ORB keeps 31 px from the borders: frames larger than the other tests'
    assert _raw_frames(path)[0].shape == (96, 192, 3)
    orb = OrbParams(nfeatures=200)
    one, split = _rows(path, 100, orb), _rows(path, 2, orb)
    assert [int(r["correspondence_kind"]) for r in one] == [int(r["correspondence_kind"]) for r in split]
    for a, b in zip(one, split):
        np.testing.assert_array_equal(a["correspondences"], b["correspondences"])
    pts = np.concatenate([r["correspondences"] for r in one])
    assert one[0]["frame"].shape == (192, 96, 3)
    assert len(pts) and pts[:, [0, 2]].max() < 96 and pts[:, [1, 3]].max() < 192  # x, y within the displayed size


def test_keypoint_table_records_rotation():
    common = dict(
        source_uri="a.mp4",
        frame_index=np.array([0, 1]),
        timestamp_s=np.array([0.0, 0.1]),
        image_width=np.array([32, 32]),
        image_height=np.array([64, 64]),
        person_index=np.array([0, 0]),
        track_id=None,
        box_xyxy=np.zeros((2, 4)),
        box_score=np.ones(2),
        keypoints=np.zeros((2, 17, 2)),
        keypoint_scores=np.ones((2, 17)),
        pose_score=np.ones(2),
        keypoint_set="coco17",
        detector="d",
        detector_sha256="random",
        sppe="s",
        sppe_sha256="random",
    )
    t = keypoint_table(**common, rotation=np.array([90, 90]))
    assert t.schema.equals(KEYPOINT_SCHEMA) and t.column("rotation").to_pylist() == [90, 90]
    # writers that do not know the rotation leave it null (unknown), as files written before the column read back
    assert keypoint_table(**common).column("rotation").to_pylist() == [None, None]


def test_rotation_convention():
    from pipelines.decode import _rotation_cw, to_display

    # display matrix angle (counter-clockwise, av_display_rotation_get) → clockwise turn for display
    assert [_rotation_cw(a) for a in (0, -90, 90, 180, -180, -89.6, 45)] == [0, 90, 270, 180, 180, 90, 0]
    img = np.arange(6).reshape(2, 3, 1)  # [[0 1 2], [3 4 5]]
    assert to_display(img, 90)[..., 0].tolist() == [[3, 0], [4, 1], [5, 2]]  # clockwise: left column on top
    assert to_display(img, 270)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]
    assert to_display(img, 180)[..., 0].tolist() == [[5, 4, 3], [2, 1, 0]] and to_display(img, 0) is img
