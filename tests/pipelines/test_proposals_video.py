"""Pseudo-labels on video frames: the proposal job decodes exactly the frame the labelling job labelled."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow.parquet as pq

from jobs.make_sample import main as make_sample
from pipelines.decode import video_frames
from pipelines.proposals import ProposalConfig, ProposalSpec, generate_shard, make_shards
from store.labels import read_raypose_labels
from store.training import sample_arrays

FRAMES = [0, 4, 5, 8, 20]  # frame 5 is dropped by --video-frame-stride 4


def _output(folder, uris: list[str], frames: list[int], vid: str) -> None:
    """A committed jobs.label-like output: one person per frame, box and joints fixed (what matters is which
    pixels the sample is cut from)."""
    from store.manifest import Manifest, write_manifest
    from store.schema import keypoint_table, table_metadata
    from store.writers import write_table_atomic

    p = len(frames)
    kp = np.tile(np.stack([np.linspace(60, 120, 17), np.linspace(30, 130, 17)], axis=1)[None], (p, 1, 1))
    table = keypoint_table(
        source_uri=np.asarray(uris, object),
        frame_index=np.asarray(frames),
        timestamp_s=np.full(p, np.nan),
        image_width=np.full(p, 256),
        image_height=np.full(p, 160),
        person_index=np.zeros(p, int),
        track_id=None,
        box_xyxy=np.tile([[50.0, 20.0, 130.0, 140.0]], (p, 1)),
        box_score=np.ones(p),
        keypoints=kp.astype(np.float32),
        keypoint_scores=np.full((p, 17), 0.9),
        pose_score=np.full(p, 2.0, np.float32),
        keypoint_set="coco17",
        detector="d",
        detector_sha256="x",
        sppe="s",
        sppe_sha256="y",
        metadata=table_metadata(random_weights=False),
    )
    write_table_atomic(table, f"{folder}/poses/video_id={vid}/part-0.parquet")
    write_manifest(
        str(folder),
        Manifest(
            video_id=vid, source_uri=uris[0], fingerprint="f", config_hash="c", run_id="r",
            num_frames=max(frames) + 1, num_persons=p, num_errors=0, files=(), random_weights=False,
        ),
    )  # fmt: skip


def _crops(out) -> dict[int, np.ndarray]:
    t = pq.read_table(out / "samples")
    crops, _, _ = sample_arrays(t.to_pydict())
    frames = [int(i.rsplit(":", 1)[1]) for i in t.column("image_id").to_pylist()]
    return dict(zip(frames, crops))


def test_video_frames_become_samples_cut_from_exactly_that_frame(tmp_path):
    assert make_sample(["--out", str(tmp_path), "--frames", "24", "--persons", "2", "--size", "256x160"]) == 0
    video = str(tmp_path / "walkers.mp4")
    decoded = dict(video_frames(video, list(range(24))))
    assert sorted(decoded) == list(range(24)) and not any(isinstance(f, str) for f in decoded.values())
    assert all(np.abs(decoded[i].astype(int) - decoded[i + 4]).mean() > 1 for i in (0, 4, 8))  # frames differ

    _output(tmp_path / "video_labels", [video] * len(FRAMES), FRAMES, "walkers-00000001")
    src = read_raypose_labels(str(tmp_path / "video_labels"), video_frame_stride=4)
    assert [im.frame_index for im in src.images] == [0, 4, 8, 20] and src.skipped["video_frame_stride"] == 1
    assert all(im.image_uri == video for im in src.images)
    # The same labels on PNG files of the decoded frames (lossless): the samples must be identical.
    pngs = []
    for i in FRAMES:
        path = tmp_path / "frames" / f"{i:04d}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(decoded[i], cv2.COLOR_RGB2BGR))
        pngs.append(str(path))
    _output(tmp_path / "image_labels", pngs, FRAMES, "frames-00000002")
    ref = read_raypose_labels(str(tmp_path / "image_labels"), video_frame_stride=4)
    assert len(ref.images) == len(FRAMES) and all(im.frame_index == -1 for im in ref.images)  # images: no stride

    cfg = ProposalConfig(mode="gt", augment="none", crop_format="raw")
    for label_source, out in ((src, tmp_path / "out_video"), (ref, tmp_path / "out_images")):
        for shard in make_shards([label_source], 3):  # shards split the video: each decodes only its frames
            row = generate_shard(shard, ProposalSpec(cfg, str(out), {}, "t"))
            assert row["num_errors"] == 0
    got, want = _crops(tmp_path / "out_video"), _crops(tmp_path / "out_images")
    assert sorted(got) == [0, 4, 8, 20]
    for i, crop in got.items():
        np.testing.assert_array_equal(crop, want[i])
    assert not np.array_equal(got[0], got[20])  # and the crops are of different frames


def test_a_frame_past_the_end_is_an_error_row(tmp_path):
    assert make_sample(["--out", str(tmp_path), "--frames", "12", "--persons", "1", "--size", "256x160"]) == 0
    video = str(tmp_path / "walkers.mp4")
    _output(tmp_path / "labels", [video] * 2, [3, 40], "walkers-00000003")
    src = read_raypose_labels(str(tmp_path / "labels"))
    (shard,) = make_shards([src], 8)
    row = generate_shard(shard, ProposalSpec(ProposalConfig(mode="gt", augment="none"), str(tmp_path / "o"), {}, "t"))
    assert row["num_samples"] == 1 and row["num_errors"] == 1
    (err,) = pq.read_table(tmp_path / "o" / "errors").to_pylist()
    assert err["image_id"].endswith(":40") and "40" in err["error"]
