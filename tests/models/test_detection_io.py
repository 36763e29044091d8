"""Precomputed detections: MMPose's ``test_coco_det_AP_H_56.json`` reproduced exactly from JSON and from a Parquet
copy, lookups by id and file name, unknown frames, and malformed files named in the error."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.detections_io import (
    DetectionsFileError,
    DetectionsTable,
    load_detections,
    write_detections_parquet,
)

COUNTS = {785: 22, 40083: 26, 196141: 33, 197388: 37}  # ../shared/data/README.md


@pytest.fixture(scope="module")
def det_json(shared_data: Path) -> Path:
    return shared_data / "coco" / "test_coco_det_AP_H_56.json"


def _expected(det_json: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Written from the file's definition (as AlphaPose's ``--detfile`` reads it): xyxy = x, y, x + w, y + h, no
    −1; file order."""
    out: dict[int, tuple[list, list]] = {}
    for r in json.loads(det_json.read_text()):
        x, y, w, h = r["bbox"]
        out.setdefault(r["image_id"], ([], []))
        out[r["image_id"]][0].append([x, y, x + w, y + h])
        out[r["image_id"]][1].append(r["score"])
    return {k: (np.asarray(b, np.float32), np.asarray(s, np.float32)) for k, (b, s) in out.items()}


def _assert_reproduces(table: DetectionsTable, expected) -> None:
    assert len(table) == 118
    for image_id, (boxes, scores) in expected.items():
        got_boxes, got_scores = table.lookup(image_id)
        assert len(got_boxes) == COUNTS[image_id]
        assert got_boxes.dtype == got_scores.dtype == np.float32
        np.testing.assert_array_equal(got_boxes, boxes)
        np.testing.assert_array_equal(got_scores, scores)


def test_json_reproduces_boxes_exactly(det_json):
    table = load_detections(str(det_json))
    _assert_reproduces(table, _expected(det_json))
    assert table.sha256 == hashlib.sha256(det_json.read_bytes()).hexdigest()
    assert sorted(int(k) for k in table.keys()) == sorted(COUNTS)


def test_parquet_round_trip_reproduces_boxes_exactly(det_json, tmp_path):
    path = tmp_path / "dets.parquet"
    write_detections_parquet(load_detections(str(det_json)), str(path))
    schema = pq.read_schema(path)
    assert schema.field("image_key").type == pa.string()
    assert schema.field("box_xyxy").type == pa.list_(pa.float32(), 4)
    assert schema.field("score").type == pa.float32()
    table = load_detections(str(path))
    _assert_reproduces(table, _expected(det_json))
    assert table.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_parquet_with_variable_lists_and_integer_keys(tmp_path):
    path = tmp_path / "d.pq"
    pq.write_table(
        pa.table(
            {
                "image_key": pa.array([7, 7, 9], pa.int64()),
                "box_xyxy": pa.array([[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 1, 1]], pa.list_(pa.float64())),
                "score": pa.array([0.5, 0.25, 1.0], pa.float64()),
            }
        ),
        path,
    )
    boxes, scores = load_detections(str(path)).lookup("000007.png")
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(scores, [0.5, 0.25])


def test_lookup_by_id_and_file_name(det_json):
    table = load_detections(str(det_json))
    ref = table.lookup(785)[0]
    for key in ("785", np.int64(785), "000000000785.jpg", "/data/coco/val2017/000000000785.jpg", "000000000785"):
        np.testing.assert_array_equal(table.lookup(key)[0], ref)
    ref[0, 0] = -1  # lookups hand out copies
    assert table.lookup(785)[0][0, 0] != -1


def test_unknown_frame_is_empty_not_an_error(det_json):
    boxes, scores = load_detections(str(det_json)).lookup("000000999999.jpg")
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    assert boxes.dtype == scores.dtype == np.float32


def test_non_person_categories_are_skipped(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text(
        json.dumps(
            [
                {"image_id": "a.jpg", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9},
                {"image_id": "a.jpg", "category_id": 3, "bbox": [0, 0, 9, 9], "score": 0.8},
                {"image_id": "a.jpg", "bbox": [10, 10, 5, 5], "score": 0.7},  # AlphaPose --detfile: no category
            ]
        )
    )
    boxes, scores = load_detections(str(path)).lookup("a.jpg")
    np.testing.assert_array_equal(boxes, [[1, 2, 4, 6], [10, 10, 15, 15]])
    np.testing.assert_array_equal(scores, np.float32([0.9, 0.7]))


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("bad.json", b"[{", "not valid JSON"),
        ("obj.json", b'{"image_id": 1}', "expected a JSON list"),
        ("nobox.json", b'[{"image_id": 1, "score": 0.5}]', "entry 0 lacks bbox"),
        ("short.json", b'[{"image_id": 1, "bbox": [1, 2, 3], "score": 0.5}]', "entry 0 bbox must be 4 finite numbers"),
        ("nan.json", b'[{"image_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]', "entry 0 score must be a finite number"),
        ("junk.parquet", b"definitely not parquet", "not a readable Parquet file"),
        ("dets.csv", b"a,b", "unknown detections format"),
    ],
)
def test_malformed_files_are_named(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DetectionsFileError, match=match) as e:
        load_detections(str(path))
    assert name in str(e.value)


def test_parquet_missing_columns_and_missing_file(tmp_path):
    path = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"image_id": [1], "bbox": [[1.0, 2.0, 3.0, 4.0]]}), path)
    with pytest.raises(DetectionsFileError, match=r"cols\.parquet: missing column\(s\) image_key, box_xyxy, score"):
        load_detections(str(path))
    with pytest.raises(DetectionsFileError, match=r"not found: .*absent\.json"):
        load_detections(str(tmp_path / "absent.json"))
