"""The per-video stage streams staged shards: ids equal whole-video tracking, one shard in memory, ORB pairs routed.

Rows are built the way pose NMS emits them, from the Bonn clip's ground truth perturbed by the benchmark's
"false_positives_4" scenario (extra low-score poses in every frame), with frames 20–21 left empty (nobody detected).
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import store.video_publish as publish_mod
from actors.common import ragged
from actors.publish import PublishSpec, TrackAndPublish, stage_rows
from benchmarks.poseflow import decode_frames, load_bonn_clip, make_scenario
from models.correspondences import OrbParams, filter_for_tracking, video_correspondences
from models.poseflow import PoseFlowParams, PoseFlowTracker
from store.schema import CORR_IDENTITY, CORR_NONE, CORR_PAIRS


@pytest.fixture(scope="module")
def bonn(shared_data):
    clip = load_bonn_clip(shared_data)
    scenario = make_scenario(clip, "false_positives_4", seed=1)
    frames = decode_frames(clip.video_path)
    pairs = video_correspondences(frames, OrbParams(nfeatures=1500))  # entry t: frame t − 1 → t
    return clip, scenario, pairs


def _rows(clip, scenario, pairs, frames: list[int]) -> dict[str, np.ndarray]:
    """Pose-NMS-shaped rows of the given clip frames (frames the scenario skipped have no persons)."""
    per_frame = {int(t): i for i, t in enumerate(scenario.frame_indices) if t not in (20, 21)}
    w, h = clip.image_size
    cols: dict[str, list] = {
        c: [] for c in ("keypoints", "keypoint_scores", "pose_scores", "boxes_xyxy", "box_scores", "correspondences")
    }
    kinds = []
    for t in frames:
        i = per_frame.get(t)
        kp = scenario.keypoints[i] if i is not None else np.zeros((0, 14, 2))
        kps = scenario.keypoint_scores[i] if i is not None else np.zeros((0, 14))
        sc = scenario.scores[i] if i is not None else np.zeros(0)
        cols["keypoints"].append(kp.astype(np.float32))
        cols["keypoint_scores"].append(kps.astype(np.float32))
        cols["pose_scores"].append(sc.astype(np.float32))
        lo, hi = kp.min(axis=1) if len(kp) else np.zeros((0, 2)), kp.max(axis=1) if len(kp) else np.zeros((0, 2))
        cols["boxes_xyxy"].append(np.concatenate([lo, hi], axis=1).astype(np.float32))
        cols["box_scores"].append(np.ones(len(kp), np.float32))
        p = pairs[t] if t > 0 else None
        cols["correspondences"].append(p if p is not None else np.zeros((0, 4), np.int16))
        kinds.append(CORR_NONE if t == 0 else CORR_PAIRS if p is not None else CORR_IDENTITY)
    n = len(frames)
    return {
        "video_id": np.array(["bonn"] * n, dtype=object),
        "unit_uri": np.array(["/in/bonn.mp4"] * n, dtype=object),
        "source_uri": np.array(["/in/bonn.mp4"] * n, dtype=object),
        "shard_index": np.zeros(n, np.int64),
        "num_frames": np.full(n, clip.num_frames, np.int64),
        "frame_index": np.asarray(frames, np.int64),
        "timestamp_s": np.asarray(frames, np.float64) / 25,
        "image_width": np.full(n, w, np.int32),
        "image_height": np.full(n, h, np.int32),
        "error": np.array([""] * n, dtype=object),
        "stage": np.array([""] * n, dtype=object),
        "detector": np.array(["precomputed"] * n, dtype=object),
        "detector_weights": np.array(["abc"] * n, dtype=object),
        "n_persons": np.array([len(k) for k in cols["keypoints"]], np.int32),
        "correspondence_kind": np.asarray(kinds, np.int8),
        "t_orb": np.full(n, 0.01),
        **{c: ragged(v) for c, v in cols.items()},
    }


def _spec(out, tracking=PoseFlowParams()) -> PublishSpec:
    return PublishSpec(
        output=str(out),
        run_id="r",
        config_hash="h",
        fingerprints={},
        keypoint_set="crowdpose14",
        sppe="s",
        sppe_sha256="x",
        random_weights=False,
        tracking=tracking,
    )


def _stage(spec, clip, scenario, pairs, shard_frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Stage the clip as shards of ``shard_frames``, each in two files, in shuffled order; return the references."""
    rng = np.random.default_rng(seed)
    refs = []
    for s, start in enumerate(range(0, clip.num_frames, shard_frames)):
        frames = list(range(start, min(start + shard_frames, clip.num_frames)))
        rng.shuffle(frames)
        for piece in (frames[: len(frames) // 2 + 1], frames[len(frames) // 2 + 1 :]):
            if piece:
                rows = _rows(clip, scenario, pairs, piece)
                rows["shard_index"][:] = s
                refs.append(stage_rows(rows, spec))
    order = rng.permutation(len(refs))
    return {c: np.concatenate([refs[i][c] for i in order]) for c in refs[0]}


def _reference_ids(clip, scenario, pairs, params: PoseFlowParams, orb: bool) -> list[np.ndarray]:
    """PoseFlowTracker on the whole video in memory, unfiltered pairs, only across adjacent frames with detections."""
    rows = _rows(clip, scenario, pairs, list(range(clip.num_frames)))
    tracker = PoseFlowTracker(params)
    out, prev_t = [], None
    for t in range(clip.num_frames):
        kp = rows["keypoints"][t].astype(np.float64)
        corr = pairs[t] if orb and prev_t == t - 1 and len(kp) else None
        out.append(
            tracker.update(
                kp,
                rows["keypoint_scores"][t].astype(np.float64),
                rows["pose_scores"][t].astype(np.float64),
                clip.image_size,
                corr,
            )
        )
        if len(kp):
            prev_t = t
    return out


def _published_ids(out) -> list[np.ndarray]:
    t = pq.read_table(out / "poses" / "video_id=bonn" / "part-0.parquet").to_pandas()
    t = t.sort_values(["frame_index", "person_index"])
    return [g["track_id"].to_numpy() for _, g in t.groupby("frame_index")]


@pytest.mark.parametrize("mode", ["released", "improved"])
@pytest.mark.parametrize("shard_frames", [1, 7, 41])
def test_streamed_shards_track_like_the_whole_video(bonn, tmp_path, monkeypatch, shard_frames, mode):
    clip, scenario, pairs = bonn
    params = PoseFlowParams(mode=mode)
    spec = _spec(tmp_path, params)
    refs = _stage(spec, clip, scenario, pairs, shard_frames)

    reads, passed = [], []
    real_read = publish_mod.read_staged

    def recording_read(uris, storage_options=None):
        batch = real_read(uris, storage_options)
        reads.append((set(batch["shard_index"].tolist()), len(batch["frame_index"])))
        return batch

    class RecordingTracker(PoseFlowTracker):
        def update(self, keypoints, keypoint_scores, scores, image_size, correspondences=None):
            passed.append(correspondences)
            return super().update(keypoints, keypoint_scores, scores, image_size, correspondences)

    monkeypatch.setattr(publish_mod, "read_staged", recording_read)
    monkeypatch.setattr(publish_mod, "PoseFlowTracker", RecordingTracker)
    summary = TrackAndPublish(spec)(refs)
    assert summary["published"][0] and summary["num_errors"][0] == 0

    # one shard per read, never more rows than a shard has: the video is never held whole
    assert all(len(shards) == 1 and n <= shard_frames for shards, n in reads)
    assert len(reads) == -(-clip.num_frames // shard_frames)

    expected = _reference_ids(clip, scenario, pairs, params, orb=True)
    got = _published_ids(tmp_path)
    assert [len(e) for e in expected if len(e)] == [len(g) for g in got]
    for e, g in zip([e for e in expected if len(e)], got):
        np.testing.assert_array_equal(g, e)

    # the pairs handed to the tracker are the decode-stage pairs filtered to what the grades read
    rows = _rows(clip, scenario, pairs, list(range(clip.num_frames)))
    with_pairs = 0
    prev_t = None
    for t, arg in zip(range(clip.num_frames), passed):
        kp = rows["keypoints"][t].astype(np.float64)
        if prev_t == t - 1 and len(kp) and pairs[t] is not None:
            want = filter_for_tracking(
                pairs[t], rows["keypoints"][prev_t].astype(np.float64), kp, clip.image_size, params
            )
            np.testing.assert_array_equal(arg, want)
            assert 0 < len(arg) < len(pairs[t])
            with_pairs += 1
        else:
            assert arg is None
        if len(kp):
            prev_t = t
    assert with_pairs >= 30


def test_frame_statuses_errors_and_duplicates(bonn, tmp_path):
    clip, scenario, pairs = bonn
    spec = _spec(tmp_path, tracking=None)
    rows = _rows(clip, scenario, pairs, [0, 1, 2, 2, 5, 6])  # frame 2 twice (a retried task), 3–4 and 7– never arrive
    rows["error"][5] = "ValueError: broken frame"
    rows["stage"][5] = "decode"
    refs = stage_rows(rows, spec)
    summary = TrackAndPublish(spec)(refs)
    assert summary["published"][0] and summary["num_frames"][0] == clip.num_frames
    frames = pq.read_table(tmp_path / "frames" / "video_id=bonn" / "part-0.parquet").to_pandas()
    assert frames["frame_index"].tolist() == list(range(clip.num_frames))
    status = frames["status"].tolist()
    assert status[:7] == ["ok", "ok", "ok", "missing", "missing", "ok", "decode_error"]
    assert set(status[7:]) == {"missing"}
    poses = pq.read_table(tmp_path / "poses" / "video_id=bonn" / "part-0.parquet").to_pandas()
    assert poses["frame_index"].value_counts().get(2, 0) == len(rows["keypoints"][2])  # kept once
    assert poses["track_id"].isna().all()  # tracking off
    import json

    errors = json.loads(summary["errors_json"][0])
    assert [e["stage"] for e in errors] == ["decode", "decode"]
    assert errors[1]["message"].startswith(f"{clip.num_frames - 5} of {clip.num_frames} frames not decoded")
    assert not (tmp_path / "_staging" / "bonn").exists()  # staged rows are removed once committed


@pytest.mark.parametrize("rotation", [90, None])
def test_rotation_reaches_the_keypoint_table(bonn, tmp_path, rotation):
    """The decode stage's ``rotation`` column (displayed orientation) is published; rows staged before the column
    existed publish null."""
    clip, scenario, pairs = bonn
    spec = _spec(tmp_path, tracking=None)
    rows = _rows(clip, scenario, pairs, [0, 1, 2])
    if rotation is not None:
        rows["rotation"] = np.full(3, rotation, np.int16)
    assert TrackAndPublish(spec)(stage_rows(rows, spec))["published"][0]
    poses = pq.read_table(tmp_path / "poses" / "video_id=bonn" / "part-0.parquet").to_pandas()
    assert len(poses) > 0
    if rotation is None:
        assert poses["rotation"].isna().all()
    else:
        assert (poses["rotation"] == rotation).all()


def test_a_video_without_good_frames_is_not_published(bonn, tmp_path):
    clip, scenario, pairs = bonn
    spec = _spec(tmp_path)
    rows = _rows(clip, scenario, pairs, [0, 1])
    rows["error"][:] = "ValueError: unreadable"
    rows["stage"][:] = "decode"
    summary = TrackAndPublish(spec)(stage_rows(rows, spec))
    assert not summary["published"][0] and summary["num_errors"][0] == 2
    assert not (tmp_path / "poses").exists() or not any((tmp_path / "poses").rglob("*.parquet"))
    assert not (tmp_path / "_manifest").exists()


def test_a_retried_task_reports_the_commit_of_its_earlier_attempt(bonn, tmp_path):
    """Ray may rerun the per-video task after an attempt that committed and removed the staged rows but died before
    returning: the rerun finds no staged files and must report the commit, not a failure."""
    clip, scenario, pairs = bonn
    spec = _spec(tmp_path)
    refs = stage_rows(_rows(clip, scenario, pairs, list(range(clip.num_frames))), spec)
    first = TrackAndPublish(spec)(refs)
    again = TrackAndPublish(spec)(refs)  # the staged files are gone now
    assert first["published"][0] and again["published"][0] and again["num_errors"][0] == 0
    assert (again["num_frames"][0], again["num_persons"][0]) == (first["num_frames"][0], first["num_persons"][0])
    other_run = PublishSpec(**{**spec.__dict__, "run_id": "another"})
    failed = TrackAndPublish(other_run)(refs)  # a commit by another run does not count
    assert not failed["published"][0] and "FileNotFoundError" in failed["errors_json"][0]


@pytest.mark.faults
@pytest.mark.parametrize("failing", ["frames", "manifest"])
def test_a_full_disk_while_publishing_is_an_infrastructure_error_and_publishes_nothing(
    bonn, tmp_path, monkeypatch, failing
):
    """ENOSPC after the keypoint table was published: that table is deleted again, an earlier run's marker no longer
    claims the video, and the error's kind is ``infrastructure`` (``jobs.label`` exits 3); frame errors stay
    ``input``."""
    import errno
    import json

    from store.manifest import Manifest, write_manifest
    from store.writers import AtomicParquetWriter

    clip, scenario, pairs = bonn
    spec = _spec(tmp_path)
    old = Manifest("bonn", "/in/bonn.mp4", "f", "old-config", "old-run", 1, 1, 0, (), False)
    write_manifest(str(tmp_path), old)
    rows = _rows(clip, scenario, pairs, list(range(clip.num_frames)))
    rows["error"][3], rows["stage"][3] = "ValueError: bad frame", "decode"
    full = OSError(errno.ENOSPC, "No space left on device")
    if failing == "frames":
        real_commit = AtomicParquetWriter.commit

        def commit(self):
            if "/frames/" in self.uri:
                raise full
            return real_commit(self)

        monkeypatch.setattr(AtomicParquetWriter, "commit", commit)
    else:
        monkeypatch.setattr(publish_mod, "write_manifest", lambda *a, **k: (_ for _ in ()).throw(full))
    summary = TrackAndPublish(spec)(stage_rows(rows, spec))
    assert not summary["published"][0]
    errors = json.loads(summary["errors_json"][0])
    assert [(e["stage"], e["kind"]) for e in errors] == [("publish", "infrastructure")]
    assert "No space left" in errors[0]["message"]
    assert not [p for p in tmp_path.rglob("*.parquet") if "_staging" not in p.parts and not p.name.startswith(".")]
    assert not (tmp_path / "_manifest" / "bonn.json").exists()
    monkeypatch.undo()
    good = TrackAndPublish(spec)(stage_rows(rows, spec))  # the disk has room again
    assert good["published"][0]
    assert [e["kind"] for e in json.loads(good["errors_json"][0])] == ["input"]


def test_error_kinds():
    import errno

    from store.video_publish import INFRASTRUCTURE, INPUT, error_kind

    assert error_kind(OSError(errno.ENOSPC, "full")) == INFRASTRUCTURE
    assert error_kind(PermissionError("denied")) == INFRASTRUCTURE
    assert error_kind(MemoryError()) == INFRASTRUCTURE
    assert error_kind(ValueError("bad rows")) == INPUT
    try:
        try:
            raise TimeoutError("s3 slow")
        except TimeoutError as e:
            raise RuntimeError("publish failed") from e
    except RuntimeError as e:
        assert error_kind(e) == INFRASTRUCTURE
    from botocore.exceptions import ClientError

    assert error_kind(ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")) == INFRASTRUCTURE
