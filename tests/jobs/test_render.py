"""``jobs.render`` over a hand-published output folder: every frame rendered, skeletons drawn in track colours."""

from __future__ import annotations

import json

import cv2
import numpy as np

from jobs.make_sample import main as make_sample
from jobs.render import main as render
from models.render import track_colour
from pipelines.decode import probe_video
from store.manifest import Manifest, write_manifest
from store.schema import keypoint_table, table_metadata
from store.writers import write_table_atomic


def test_render_video_with_tracks(tmp_path):
    assert make_sample(["--out", str(tmp_path / "s"), "--frames", "8", "--persons", "2", "--size", "256x160"]) == 0
    video = str(tmp_path / "s" / "walkers.mp4")
    gt = json.loads((tmp_path / "s" / "walkers_gt.json").read_text())
    anns = [a for a in gt["annotations"]]
    kps = np.array([np.array(a["keypoints"]).reshape(17, 3)[:, :2] for a in anns], np.float32)
    frames = np.array([a["image_id"] - 1 for a in anns])
    out = tmp_path / "out"
    table = keypoint_table(
        source_uri=video,
        frame_index=frames,
        timestamp_s=frames / 12.0,
        image_width=np.full(len(anns), 256),
        image_height=np.full(len(anns), 160),
        person_index=np.zeros(len(anns)),
        track_id=np.array([a["track_id"] for a in anns]),
        box_xyxy=np.zeros((len(anns), 4)),
        box_score=np.ones(len(anns)),
        keypoints=kps,
        keypoint_scores=np.ones((len(anns), 17)),
        pose_score=np.ones(len(anns)),
        keypoint_set="coco17",
        detector="d",
        detector_sha256="x",
        sppe="s",
        sppe_sha256="random",
        metadata=table_metadata(random_weights=True),
    )
    write_table_atomic(table, str(out / "poses" / "video_id=v" / "part-0.parquet"))
    write_manifest(
        str(out),
        Manifest(
            video_id="v",
            source_uri=video,
            fingerprint="f",
            config_hash="c",
            run_id="r",
            num_frames=8,
            num_persons=len(anns),
            num_errors=0,
            files=("poses/video_id=v/part-0.parquet",),
            random_weights=True,
        ),
    )
    assert render(["--output", str(out), "--dest", str(tmp_path / "r")]) == 0
    assert probe_video(str(tmp_path / "r" / "v.mp4")).num_frames == 8  # every frame, none dropped
    still = cv2.cvtColor(cv2.imread(str(tmp_path / "r" / "v_frame000004.png")), cv2.COLOR_BGR2RGB).astype(int)
    # the right shoulder of track 2 in frame 4 is painted in track 2's colour
    a = next(a for a in anns if a["image_id"] == 5 and a["track_id"] == 2)
    x, y = np.round(np.array(a["keypoints"]).reshape(17, 3)[6, :2]).astype(int)
    assert np.abs(still[y, x] - np.array(track_colour(2))).max() < 40
    assert render(["--output", str(tmp_path / "nothing"), "--dest", str(tmp_path / "r2")]) == 2
