"""jobs.proposals end to end: real COCO images, Parquet samples and errors, determinism, resume, pseudo-labels."""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.proposals import main
from pipelines.proposals import ProposalConfig, ProposalSpec, generate_shard, make_shards
from store.labels import read_coco_labels, read_raypose_labels
from store.training import SAMPLE_SCHEMA, sample_arrays


def _coco(shared_data) -> list[str]:
    return ["--gt", str(shared_data / "coco" / "test_coco.json"), "--images", str(shared_data / "coco")]


def _read(out, table: str = "samples") -> pa.Table:
    files = sorted(glob.glob(os.path.join(str(out), table, "shard=*", "part-0.parquet")))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})


def _by_id(table: pa.Table) -> dict[str, dict]:
    """sample_id → row, NaN keypoints (no target) as None so that rows compare with ==."""
    rows = table.to_pylist()
    for r in rows:
        r["keypoints"] = [None if v != v else v for v in r["keypoints"]]
    return {r["sample_id"]: r for r in rows}


def _raypose_output(folder, shared_data, pose_scores) -> None:
    """A jobs.label-like output over the four COCO images: the GT persons as 'predictions' (joint score 0.9 where
    labelled, 0.1 elsewhere), with the given pose scores, committed by a manifest."""
    from store.manifest import Manifest, write_manifest
    from store.schema import keypoint_table, table_metadata
    from store.writers import write_table_atomic

    gt = json.loads((shared_data / "coco" / "test_coco.json").read_text())
    anns = [a for a in gt["annotations"] if a.get("num_keypoints")]
    images = {i["id"]: i for i in gt["images"]}
    order = sorted(images)
    p = len(anns)
    kp = np.asarray([a["keypoints"] for a in anns], np.float32).reshape(p, 17, 3)
    boxes = np.asarray(
        [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
    )
    table = keypoint_table(
        source_uri=np.asarray([str(shared_data / "coco" / images[a["image_id"]]["file_name"]) for a in anns], object),
        frame_index=np.asarray([order.index(a["image_id"]) for a in anns]),
        timestamp_s=np.full(p, np.nan),
        image_width=np.asarray([images[a["image_id"]]["width"] for a in anns]),
        image_height=np.asarray([images[a["image_id"]]["height"] for a in anns]),
        person_index=np.arange(p),
        track_id=None,
        box_xyxy=boxes,
        box_score=np.ones(p),
        keypoints=kp[:, :, :2],
        keypoint_scores=np.where(kp[:, :, 2] > 0, 0.9, 0.1),
        pose_score=np.asarray(pose_scores, np.float32)[:p],
        keypoint_set="coco17",
        detector="d",
        detector_sha256="x",
        sppe="s",
        sppe_sha256="y",
        metadata=table_metadata(random_weights=False),
    )
    vid = "coco-0000aaaa"
    write_table_atomic(table, f"{folder}/poses/video_id={vid}/part-0.parquet")
    write_manifest(
        str(folder),
        Manifest(
            video_id=vid, source_uri=str(shared_data / "coco"), fingerprint="f", config_hash="c", run_id="r",
            num_frames=len(order), num_persons=p, num_errors=0, files=(), random_weights=False,
        ),
    )  # fmt: skip
    return anns


# ---- without Ray: validation, the shard function, the readers ----------------------------------------------------


def test_bad_arguments_exit_2_before_ray(tmp_path, shared_data, capsys):
    out = str(tmp_path / "out")
    coco = _coco(shared_data)
    cases = [
        (["--out", out], "no labels"),
        (["--gt", str(tmp_path / "nope.json"), "--images", str(shared_data / "coco"), "--out", out], "nope.json"),
        ([*coco, "--out", out, "--mode", "pgpg"], "--pgpg"),
        ([*coco, "--out", out, "--mode", "pgpg", "--pgpg", str(tmp_path / "m.json")], "file not found"),
        ([*coco, "--out", out, "--images-per-shard", "0"], "--images-per-shard"),
        (["--gt", coco[1], "--images", str(tmp_path / "nowhere"), "--out", out], "no such folder"),
        (
            [*coco, "--gt", str(shared_data / "crowdpose" / "test_crowdpose.json"), "--images", coco[3], "--out", out],
            "different keypoint sets",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    import ray

    assert not ray.is_initialized()


def test_dpg_branches_and_truncations_reach_the_table(tmp_path, shared_data):
    """Over 20 proposals × 12 persons the table's branch column shows DPG's 15 % patches, and persons with more than
    13 joints inside get truncated boxes (32 % of such draws)."""
    src = read_coco_labels(str(shared_data / "coco" / "test_coco.json"), str(shared_data / "coco"))
    cfg = ProposalConfig(mode="dpg", proposals_per_person=20, augment="none", images_per_shard=4)
    spec = ProposalSpec(cfg, str(tmp_path), {}, "t")
    (shard,) = make_shards([src], 4)
    row = generate_shard(shard, spec)
    t = _read(tmp_path)
    assert row["num_samples"] == t.num_rows == 20 * src.num_persons
    assert t.schema.equals(SAMPLE_SCHEMA, check_metadata=False)
    branch = np.asarray(t.column("branch").to_pylist())
    assert set(branch) == {"jitter", "patch"}
    assert 0.05 < np.mean(branch == "patch") < 0.3
    trunc = np.asarray(t.column("truncation").to_pylist())
    assert 0 < np.mean(trunc != "none") < 0.32
    # the trainer's reader: crops zeroed where empty, labels where target_weight is 1
    crops, kps, w = sample_arrays(t.slice(0, 8).to_pydict())
    assert crops.shape == (8, 256, 192, 3) and kps.shape == (8, 17, 2) and w.shape == (8, 17)
    assert np.isnan(kps[w == 0]).all() and np.isfinite(kps[w > 0]).all()


def test_pseudo_labels_from_a_raypose_output(tmp_path, shared_data):
    scores = [0.2] + [2.0] * 20  # the first person is below --min-score
    anns = _raypose_output(tmp_path / "labelled", shared_data, scores)
    src = read_raypose_labels(str(tmp_path / "labelled"), min_score=0.5, min_keypoint_score=0.5)
    assert src.kind == "pseudo" and src.keypoint_set == "coco17"
    assert src.num_persons == len(anns) - 1 and src.skipped["low_score"] == 1
    for im in src.images:  # visible exactly where the joint score (0.9 / 0.1) passes the threshold
        assert im.label_kind == "pseudo" and (im.label_score == 2.0).all()
    cfg = ProposalConfig(mode="gt", augment="none")
    rows = [generate_shard(s, ProposalSpec(cfg, str(tmp_path / "out"), {}, "t")) for s in make_shards([src], 2)]
    t = _read(tmp_path / "out")
    assert sum(r["num_samples"] for r in rows) == t.num_rows == len(anns) - 1
    assert set(t.column("label_kind").to_pylist()) == {"pseudo"}
    assert set(t.column("label_score").to_pylist()) == {2.0}
    labelled = sum(int((np.asarray(a["keypoints"]).reshape(17, 3)[:, 2] > 0).sum()) for a in anns[1:])
    assert sum(sum(w) for w in t.column("target_weight").to_pylist()) <= labelled


def test_pgpg_mode_from_a_fit_pgpg_file(tmp_path, shared_data, capsys):
    """A jobs.fit_pgpg model file drives mode 'pgpg': the table records the branch and each proposal's atom."""
    from jobs.proposals import _load_pgpg
    from models.pgpg import fit_pgpg

    rng = np.random.default_rng(0)
    n = 60
    kp = rng.normal(0, 1, (17, 2))[None] * 30 + rng.uniform(200, 300, (n, 1, 2)) + rng.normal(0, 1, (n, 17, 2))
    gt = np.concatenate([kp.min(axis=1) - 10, kp.max(axis=1) + 10], axis=1)
    model = fit_pgpg(kp, np.ones((n, 17), bool), gt, gt + rng.normal(0, 3, (n, 4)), k=2, seed=0)
    path = tmp_path / "pgpg.json"
    path.write_text(json.dumps({"format": "raypose-pgpg/1", "model": model.to_dict()}))
    cfg = ProposalConfig(mode="pgpg", pgpg_model=_load_pgpg(str(path)), proposals_per_person=3, augment="none")
    src = read_coco_labels(str(shared_data / "coco" / "test_coco.json"), str(shared_data / "coco"))
    for shard in make_shards([src], 4):
        generate_shard(shard, ProposalSpec(cfg, str(tmp_path / "out"), {}, "p"))
    t = _read(tmp_path / "out")
    assert t.num_rows == 3 * src.num_persons
    assert set(t.column("branch").to_pylist()) == {"pgpg"} and set(t.column("truncation").to_pylist()) == {"none"}
    assert set(t.column("atom").to_pylist()) <= {-1, 0, 1} and None not in t.column("atom").to_pylist()
    (tmp_path / "bad.json").write_text(json.dumps({"model": {"format": "other"}}))
    coco = _coco(shared_data)
    assert main([*coco, "--out", str(tmp_path / "o"), "--mode", "pgpg", "--pgpg", str(tmp_path / "bad.json")]) == 2
    assert "not a PGPG model" in capsys.readouterr().err


@pytest.mark.s3
def test_labels_images_and_output_on_s3(s3_server, shared_data, tmp_path):
    """Annotations, images and output all behind an S3 API (moto on 127.0.0.1): the same samples as locally."""
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("bucket")
    for name in os.listdir(shared_data / "coco"):
        fs.put(str(shared_data / "coco" / name), f"bucket/coco/{name}")
    cfg = ProposalConfig(mode="dpg", proposals_per_person=2, seed=3, images_per_shard=4)
    src = read_coco_labels("s3://bucket/coco/test_coco.json", "s3://bucket/coco")
    assert src.images[0].image_uri.startswith("s3://bucket/coco/")
    (shard,) = make_shards([src], 4)
    row = generate_shard(shard, ProposalSpec(cfg, "s3://bucket/out", {}, "s3"))
    assert row["num_samples"] == 2 * src.num_persons and row["num_errors"] == 0
    fs.invalidate_cache()
    (part,) = fs.glob("bucket/out/samples/shard=*/part-0.parquet")
    with fs.open(part, "rb") as f:
        remote = _by_id(pq.read_table(f))
    local = read_coco_labels(str(shared_data / "coco" / "test_coco.json"), str(shared_data / "coco"))
    (lshard,) = make_shards([local], 4)
    generate_shard(lshard, ProposalSpec(cfg, str(tmp_path), {}, "local"))
    here = _by_id(_read(tmp_path))

    def key(r):
        return r["image_id"], r["person_index"], r["epoch"], r["proposal_index"]

    def content(r):  # all but where the labels and images came from (the sample id hashes the source)
        return {c: v for c, v in r.items() if c not in ("source", "image_uri", "sample_id")}

    assert {key(r): content(r) for r in remote.values()} == {key(r): content(r) for r in here.values()}
    assert fs.exists(f"bucket/out/_manifest/{shard['shard_id']}.json")


# ---- the Ray job ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    import ray

    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=1 << 30, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_job_is_deterministic_across_shard_sizes_and_resumes(ray_session, tmp_path, shared_data, capsys):
    args = [*_coco(shared_data), "--mode", "dpg", "--proposals-per-person", "2", "--epochs", "2", "--seed", "7"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*args, "--out", str(a), "--images-per-shard", "1"]) == 0
    assert "0 shards skipped" in capsys.readouterr().out
    # the same samples from a plain loop over other shards (3 images each) in this process
    src = read_coco_labels(args[1], args[3])
    cfg = ProposalConfig(mode="dpg", proposals_per_person=2, epochs=2, seed=7, images_per_shard=3)
    for shard in make_shards([src], 3):
        generate_shard(shard, ProposalSpec(cfg, str(b), {}, "plain"))
    ta, tb = _by_id(_read(a)), _by_id(_read(b))
    assert len(ta) == 12 * 2 * 2 and ta.keys() == tb.keys()
    for k, row in ta.items():  # the same bytes per sample, whatever the shard layout, Ray or not
        assert row == tb[k], k
    assert len(glob.glob(str(a / "_manifest" / "*.json"))) == 4
    # resume: every shard is committed with this config, so nothing is written again
    stamps = {f: os.stat(f).st_mtime_ns for f in glob.glob(str(a / "**" / "*.parquet"), recursive=True)}
    assert main([*args, "--out", str(a), "--images-per-shard", "1"]) == 0
    assert "0 samples in 0 shards written, 4 shards skipped" in capsys.readouterr().out
    assert stamps == {f: os.stat(f).st_mtime_ns for f in glob.glob(str(a / "**" / "*.parquet"), recursive=True)}
    # a shard whose marker is gone runs again and gives the same bytes
    marker = sorted(glob.glob(str(a / "_manifest" / "*.json")))[0]
    os.remove(marker)
    assert main([*args, "--out", str(a), "--images-per-shard", "1"]) == 0
    assert "in 1 shards written, 3 shards skipped" in capsys.readouterr().out
    assert _by_id(_read(a)) == ta
    # another config into the same output is refused
    assert main([*args, "--out", str(a), "--images-per-shard", "1", "--seed", "8"]) == 2
    assert "another config" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_corrupt_image_is_an_error_row_and_the_rest_is_kept(ray_session, tmp_path, shared_data, capsys):
    images = tmp_path / "images"
    shutil.copytree(shared_data / "coco", images)
    (images / "000000000785.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    os.remove(images / "000000040083.jpg")  # missing altogether
    gt = str(shared_data / "coco" / "test_coco.json")
    out = tmp_path / "out"
    assert main(["--gt", gt, "--images", str(images), "--out", str(out), "--images-per-shard", "4"]) == 0
    assert "2 errors" in capsys.readouterr().out
    errors = _read(out, "errors").to_pylist()
    assert sorted(e["image_id"] for e in errors) == ["40083", "785"]
    assert all(e["image_uri"].endswith(f"{int(e['image_id']):012d}.jpg") for e in errors)
    src = read_coco_labels(gt, str(images))
    kept = sum(im.num_persons for im in src.images if im.image_id not in (785, 40083))
    t = _read(out)
    assert t.num_rows == kept > 0
    assert not set(t.column("image_id").to_pylist()) & {"785", "40083"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors"] == 2 and summary["samples"] == kept


@pytest.mark.ray
@pytest.mark.slow
def test_job_takes_pseudo_labels(ray_session, tmp_path, shared_data, capsys):
    anns = _raypose_output(tmp_path / "labelled", shared_data, [2.0] * 20)
    out = tmp_path / "out"
    argv = ["--labels", str(tmp_path / "labelled"), "--min-score", "1.0", "--out", str(out), "--mode", "gt"]
    assert main([*argv, "--crop-format", "jpeg"]) == 0
    t = _read(out)
    assert t.num_rows == len(anns) and set(t.column("label_kind").to_pylist()) == {"pseudo"}
    crops, _, _ = sample_arrays(t.slice(0, 2).to_pydict())
    assert crops.shape == (2, 256, 192, 3) and crops.any()


def test_samples_carry_the_other_persons_joints_in_the_crop(tmp_path, shared_data):
    """JC-SPPE's interference joints: every other labelled person's joint that lands in the crop, mapped by the
    sample's own image_to_crop, with mirrored types on flipped samples."""
    from models.keypoints import get_keypoint_set

    src = read_coco_labels(str(shared_data / "coco" / "test_coco.json"), str(shared_data / "coco"))
    cfg = ProposalConfig(mode="dpg", proposals_per_person=3, augment="alphapose_1x", images_per_shard=4)
    (shard,) = make_shards([src], 4)
    generate_shard(shard, ProposalSpec(cfg, str(tmp_path), {}, "t"))
    rows = _read(tmp_path).to_pylist()
    images = {str(im.image_id): im for im in src.images}
    flip = dict(get_keypoint_set("coco17").flip_pairs)
    flip.update({b: a for a, b in list(flip.items())})
    with_interference = 0
    for r in rows:
        im = images[r["image_id"]]
        m = np.asarray(r["image_to_crop"]).reshape(2, 3)
        want = []
        for q in range(im.num_persons):
            if int(im.person_index[q]) == r["person_index"]:
                continue
            for j in np.flatnonzero(im.visible[q]):
                x, y = m @ np.append(im.keypoints[q, j], 1.0)
                if 0 <= x <= r["crop_width"] - 1 and 0 <= y <= r["crop_height"] - 1:
                    want.append((x, y, flip.get(int(j), int(j)) if r["flipped"] else int(j)))
        got_xy = np.asarray(r["interference_keypoints"]).reshape(-1, 2)
        assert len(got_xy) == len(want) and r["interference_types"] == [t for _, _, t in want]
        if want:
            with_interference += 1
            np.testing.assert_allclose(got_xy, [(x, y) for x, y, _ in want], atol=1e-3)
    assert with_interference >= 5  # the sample's crowded images do overlap
