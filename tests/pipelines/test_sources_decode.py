"""Listing, shard planning and frame-exact decoding on real and generated media."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from jobs.make_sample import main as make_sample
from jobs.make_sample import read_barcode
from pipelines.decode import decode_shard, plan_shards, probe_video
from store.sources import InputError, list_inputs, natural_key, normalize_uri, sanitize_id


@pytest.fixture(scope="module")
def walkers(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    assert make_sample(["--out", str(out), "--frames", "60", "--size", "320x192", "--seed", "3"]) == 0
    return out / "walkers.mp4"


def _decode_all(unit, shard_frames, chunk=4):
    probe = probe_video(unit.source_uri) if unit.kind == "video" else None
    rows = []
    for shard in plan_shards(unit, shard_frames, probe):
        for b in decode_shard(shard, chunk=chunk):
            for i in range(len(b["frame_index"])):
                rows.append({k: b[k][i] for k in b})
    return probe, rows


@pytest.mark.parametrize("shard_frames", [1, 7, 16, 60, 1000])
def test_video_shards_are_frame_exact(walkers, shard_frames):
    (unit,) = list_inputs([str(walkers)])
    probe, rows = _decode_all(unit, shard_frames)
    assert probe.num_frames == 60
    idx = [int(r["frame_index"]) for r in rows]
    assert sorted(idx) == list(range(60)) and len(set(idx)) == 60  # no gaps, no duplicates
    assert all(read_barcode(r["frame"]) == r["frame_index"] for r in rows)  # frame i really is frame i
    ts = {int(r["frame_index"]): float(r["timestamp_s"]) for r in rows}
    np.testing.assert_allclose([ts[i] for i in range(60)], np.arange(60) / 12)
    assert all(r["error"] == "" for r in rows) and rows[0]["frame"].shape == (192, 320, 3)


def test_real_videos_decode_completely(shared_data):
    units = list_inputs([str(shared_data / "videos"), str(shared_data / "bonn_posetrack" / "060470979.mp4")])
    assert [u.kind for u in units] == ["video"] * 3
    for u in units:
        probe, rows = _decode_all(u, 16)
        assert sorted(int(r["frame_index"]) for r in rows) == list(range(probe.num_frames))
        assert (rows[0]["image_width"], rows[0]["image_height"]) == (probe.width, probe.height)


def test_listing_rules(tmp_path, shared_data, walkers):
    # folders of images become one unit each, in natural order; ids are safe and unique
    seq = tmp_path / "my seq!"
    seq.mkdir()
    for name in ("10.jpg", "2.jpg", "1.jpg"):
        shutil.copy(shared_data / "coco" / "000000000785.jpg", seq / name)
    (seq / "notes.md").write_text("ignored inside folders")
    shutil.copy(walkers, tmp_path / "clip.mp4")
    (tmp_path / "list.txt").write_text(f"# inputs\n{tmp_path / 'clip.mp4'}\n{seq}\n")
    units = list_inputs([str(tmp_path / "list.txt"), str(tmp_path / "*.mp4")])
    assert [u.kind for u in units] == ["video", "images"]
    assert [f.rsplit("/", 1)[-1] for f in units[1].frames] == ["1.jpg", "2.jpg", "10.jpg"]
    assert units[1].video_id.startswith("my_seq-") and len(units[1].video_id) == len("my_seq-") + 8
    assert len({u.video_id for u in units}) == 2
    # fingerprints follow content changes
    before = units[0].fingerprint
    (tmp_path / "clip.mp4").write_bytes((tmp_path / "clip.mp4").read_bytes() + b"\0")
    assert list_inputs([str(tmp_path / "clip.mp4")])[0].fingerprint != before
    # csv with a uri column
    (tmp_path / "list.csv").write_text(f"uri,comment\n{tmp_path / 'clip.mp4'},x\n")
    assert [u.kind for u in list_inputs([str(tmp_path / "list.csv")])] == ["video"]


def test_listing_errors(tmp_path):
    with pytest.raises(InputError, match="input not found"):
        list_inputs([str(tmp_path / "nope.mp4")])
    with pytest.raises(InputError, match="matched nothing"):
        list_inputs([str(tmp_path / "*.mkv")])
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match="unsupported input type '.gif'"):
        list_inputs([str(tmp_path / "a.gif")])


def test_ids_and_natural_sort():
    assert sanitize_id("../../etc/passwd", "x").startswith("etc_passwd-")
    assert sanitize_id("...", "y").startswith("input-")
    assert sanitize_id("a.mp4", "s3://b/a.mp4") != sanitize_id("a.mp4", "s3://c/a.mp4")
    assert sorted(["f10", "f2", "F1"], key=natural_key) == ["F1", "f2", "f10"]


def test_one_file_under_two_spellings_is_one_unit(tmp_path, monkeypatch):
    # listing reads metadata only, so placeholder bytes stand in for media
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "walkers.mp4").write_bytes(b"not decoded here")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    spellings = [
        f"file://{tmp_path}/x/walkers.mp4",
        "../../x/walkers.mp4",
        f"{tmp_path}//x/./walkers.mp4",
        f"{tmp_path}/a/../x/walkers.mp4",
    ]
    units = [list_inputs([s]) for s in spellings]
    assert all(len(u) == 1 for u in units)
    assert {u[0].video_id for u in units} == {units[0][0].video_id}
    assert {u[0].fingerprint for u in units} == {units[0][0].fingerprint}
    assert {u[0].source_uri for u in units} == {str(tmp_path / "x" / "walkers.mp4")}
    # both spellings in one call, directly or through a list file: one unit, not two
    (unit,) = list_inputs(spellings[:2])
    assert unit.video_id == units[0][0].video_id
    # (the list file sits in the working directory: its relative entries are relative to its own folder)
    (work / "list.txt").write_text("\n".join(spellings) + "\n")
    assert [u.video_id for u in list_inputs([str(work / "list.txt"), spellings[1]])] == [unit.video_id]


def test_one_image_folder_under_two_spellings_is_one_unit(tmp_path, monkeypatch):
    seq = tmp_path / "seq"
    seq.mkdir()
    for name in ("2.jpg", "1.jpg"):
        (seq / name).write_bytes(b"not decoded here")
    monkeypatch.chdir(tmp_path)
    spellings = [f"{seq}/", f"{seq}/./", "seq", f"file://{tmp_path}//seq/."]
    units = [list_inputs([s]) for s in spellings]
    assert all(len(u) == 1 and u[0].kind == "images" for u in units)
    assert {(u[0].video_id, u[0].fingerprint, u[0].source_uri, u[0].frames) for u in units} == {
        (units[0][0].video_id, units[0][0].fingerprint, str(seq), (str(seq / "1.jpg"), str(seq / "2.jpg")))
    }
    (unit,) = list_inputs(spellings)
    assert unit.video_id == units[0][0].video_id and len(unit.frames) == 2
    # an image named on its own joins its folder's unit, whatever the spelling
    assert [u.video_id for u in list_inputs([f"{seq}/./1.jpg", f"{seq}/"])] == [unit.video_id]


def test_normalize_uri():
    assert normalize_uri("file:///x/./y//walkers.mp4") == "/x/y/walkers.mp4"
    assert normalize_uri("file://localhost/x/walkers.mp4") == "/x/walkers.mp4"
    assert normalize_uri("//x/../y/") == "/y"
    assert normalize_uri("s3://bucket//videos///a.mp4") == "s3://bucket/videos/a.mp4"
    assert normalize_uri("s3://bucket/videos/") == "s3://bucket/videos"
    for u in ("../a/./b.mp4", "file:///a//b", "s3://b//k/", "gs://b"):
        assert normalize_uri(normalize_uri(u)) == normalize_uri(u)


def test_bad_media_become_error_rows(tmp_path, shared_data):
    (tmp_path / "text.mp4").write_text("this is not a video")
    with pytest.raises(ValueError):  # PyAV's InvalidDataError is a ValueError
        probe_video(str(tmp_path / "text.mp4"))
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    shutil.copy(shared_data / "coco" / "000000000785.jpg", img_dir / "a.jpg")
    (img_dir / "b.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    (unit,) = list_inputs([str(img_dir)])
    _, rows = _decode_all(unit, 8)
    assert [(int(r["frame_index"]), r["error"] != "") for r in rows] == [(0, False), (1, True)]
    assert rows[1]["stage"] == "decode" and "b.jpg" in rows[1]["source_uri"]
    # a shard carrying a probe failure decodes to one error row
    bad = {**plan_shards(unit, 8)[0], "error": "ValueError: video has no frames", "stage": "probe"}
    (row,) = list(decode_shard(bad))
    assert row["stage"][0] == "probe" and row["frame"].shape == (1, 0, 0, 3)


@pytest.mark.parametrize("shard_frames", [1, 7, 41])
def test_correspondences_cross_shard_boundaries_exactly_once(shared_data, shard_frames):
    """Each frame's ORB pairs (frame i − 1 → i) equal those of the whole clip decoded in one pass, whatever the
    sharding: a shard decodes its leading frame for features only and never emits it."""
    from models.correspondences import OrbParams, video_correspondences
    from store.schema import CORR_IDENTITY, CORR_NONE, CORR_PAIRS

    orb = OrbParams(nfeatures=1500)  # fewer features than AlphaPose's 10 000 only to keep the test fast
    (unit,) = list_inputs([str(shared_data / "bonn_posetrack" / "060470979.mp4")])
    probe = probe_video(unit.source_uri)
    rows = []
    for shard in plan_shards(unit, shard_frames, probe):
        for b in decode_shard(shard, chunk=4, orb=orb):
            rows += [{k: b[k][i] for k in b} for i in range(len(b["frame_index"]))]
    rows.sort(key=lambda r: int(r["frame_index"]))
    assert [int(r["frame_index"]) for r in rows] == list(range(41))
    expected = video_correspondences((r["frame"] for r in rows), orb)
    assert rows[0]["correspondence_kind"] == CORR_NONE and len(rows[0]["correspondences"]) == 0
    for r, want in zip(rows[1:], expected[1:]):
        if want is None:
            assert r["correspondence_kind"] == CORR_IDENTITY and len(r["correspondences"]) == 0
        else:
            assert r["correspondence_kind"] == CORR_PAIRS
            assert r["correspondences"].dtype == np.int16
            np.testing.assert_array_equal(r["correspondences"], want)
    assert sum(r["correspondence_kind"] == CORR_PAIRS for r in rows) >= 35  # a real clip: almost every pair matches


def test_image_shards_carry_pairs_across_boundaries(shared_data, tmp_path):
    from models.correspondences import OrbParams, video_correspondences
    from store.schema import CORR_NONE

    orb = OrbParams(nfeatures=1000)
    frames_dir = shared_data / "bonn_posetrack" / "060470979"
    seq = tmp_path / "seq"
    seq.mkdir()
    for p in sorted(frames_dir.iterdir())[:7]:
        shutil.copy(p, seq / p.name)
    (unit,) = list_inputs([str(seq)])
    rows = []
    for shard in plan_shards(unit, 3):
        for b in decode_shard(shard, orb=orb):
            rows += [{k: b[k][i] for k in b} for i in range(len(b["frame_index"]))]
    expected = video_correspondences((r["frame"] for r in rows), orb)
    assert rows[0]["correspondence_kind"] == CORR_NONE
    for r, want in zip(rows[1:], expected[1:]):
        assert want is not None
        np.testing.assert_array_equal(r["correspondences"], want)


def test_no_correspondences_unless_asked(walkers):
    from store.schema import CORR_NONE

    (unit,) = list_inputs([str(walkers)])
    _, rows = _decode_all(unit, 16)
    assert all(r["correspondence_kind"] == CORR_NONE and r["correspondences"].shape == (0, 4) for r in rows)


def _write_moov_first_mp4(path, n: int) -> None:
    """An n-frame H.264 mp4 with its index (moov) before the media data, so a truncated copy still opens and still
    declares n frames (``movflags=faststart``; with the index at the end a truncated file does not open at all)."""
    import av

    rng = np.random.default_rng(1)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=12, options={"g": "6", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(n):
            img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.mark.parametrize("shard_frames", [5, 100])
def test_truncated_video_accounts_for_every_declared_frame(tmp_path, shard_frames):
    full, cut = tmp_path / "full.mp4", tmp_path / "cut.mp4"
    _write_moov_first_mp4(full, 24)
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.45)])
    (unit,) = list_inputs([str(cut)])
    probe, rows = _decode_all(unit, shard_frames)
    assert probe.num_frames == 24 and probe.declared_frames == 24
    good = [int(r["frame_index"]) for r in rows if r["error"] == ""]
    bad = [r for r in rows if r["error"] != ""]
    assert 0 < len(good) < 24
    # every declared frame is a frame row or an error row, once; no frame is left to a shard-wide (-1) error
    assert sorted(good + [int(r["frame_index"]) for r in bad]) == list(range(24))
    assert all(r["stage"] == "decode" and int(r["num_frames"]) == 24 for r in bad)
    assert all(r["frame"].shape == (0, 0, 3) for r in bad)
    tail = [r for r in bad if "truncated file?" in r["error"]]
    assert tail and all("of 24 declared (truncated file?)" in r["error"] for r in tail)
    first = min(int(r["frame_index"]) for r in tail)
    assert f"stream ended at frame {first} of 24 declared" in tail[0]["error"]


def test_zero_byte_inputs_name_the_file(tmp_path):
    empty_video = tmp_path / "empty.mp4"
    empty_video.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.mp4: file is empty \(0 bytes\)"):
        probe_video(str(empty_video))
    # emptied between probe and decode: the shard's error row says so too
    video = tmp_path / "later_empty.mp4"
    _write_moov_first_mp4(video, 3)
    (unit,) = list_inputs([str(video)])
    (shard,) = plan_shards(unit, 8, probe_video(str(video)))
    video.write_bytes(b"")
    (row,) = list(decode_shard(shard))
    assert row["error"][0] == f"ValueError: {video}: file is empty (0 bytes)" and row["stage"][0] == "decode"
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "0.jpg").write_bytes(b"")
    (unit,) = list_inputs([str(seq)])
    _, rows = _decode_all(unit, 8)
    assert [r["error"] for r in rows] == [f"ValueError: {seq / '0.jpg'}: file is empty (0 bytes)"]
