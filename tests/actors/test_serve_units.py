"""actors.serve without Ray: rows ↔ batches, the JSON and COCO answers, multipart bodies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actors.serve import _multipart_image, coco_results, persons_json, split_rows, stack_rows
from models.images import ImageDecodeError


def _batch() -> dict:
    kps = [np.arange(2 * 17 * 2, dtype=np.float32).reshape(2, 17, 2), np.zeros((0, 17, 2), np.float32)]
    col = np.empty(2, dtype=object)
    col[0], col[1] = kps
    return {"keypoints": col, "n_persons": np.array([2, 0], np.int32), "frame_key": np.array(["a", "b"])}


def test_rows_round_trip_keeps_ragged_columns_and_values():
    rows = split_rows(_batch())
    assert [int(r["n_persons"]) for r in rows] == [2, 0] and rows[1]["keypoints"].shape == (0, 17, 2)
    again = stack_rows(rows)
    assert again["keypoints"].dtype == object and again["n_persons"].tolist() == [2, 0]
    np.testing.assert_array_equal(again["keypoints"][0], _batch()["keypoints"][0])
    assert again["frame_key"].tolist() == ["a", "b"]


def test_persons_json_and_coco_results():
    row = {
        "n_persons": np.int32(1),
        "boxes_xyxy": np.array([[10, 20, 50, 100]], np.float32),
        "box_scores": np.array([0.9], np.float32),
        "keypoints": np.array([[[11, 21], [12, 22]]], np.float32),
        "keypoint_scores": np.array([[0.5, 0.25]], np.float32),
        "pose_scores": np.array([2.5], np.float32),
    }
    (p,) = persons_json(row)
    json.dumps(p)  # plain JSON types
    assert p["person_index"] == 0 and p["box_xyxy"] == [10, 20, 50, 100] and p["keypoints"] == [[11, 21], [12, 22]]
    (c,) = coco_results([p], image_id=785)
    assert c == {
        "image_id": 785,
        "category_id": 1,
        "keypoints": [11, 21, 0.5, 12, 22, 0.25],
        "score": 2.5,
        "bbox": [10, 20, 40, 80],
    }


def test_multipart_takes_the_file_part():
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\nDATA\r\n--XyZ--\r\n"
    )
    assert _multipart_image(body, "multipart/form-data; boundary=XyZ") == b"\x89PNG\r\n\x1a\nDATA"
    with pytest.raises(ImageDecodeError, match="no file part"):
        _multipart_image(
            body.replace(b'; filename="a.png"', b"").replace(b'name="image"', b'name="x"'),
            "multipart/form-data; boundary=XyZ",
        )
