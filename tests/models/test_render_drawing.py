"""``models.render.draw_poses``: whole-body points are drawn, face and hands small."""

from __future__ import annotations

import numpy as np

from models.keypoints import COCO_17, HALPE_136
from models.render import draw_poses


def _painted(image: np.ndarray) -> int:
    return int((image.sum(axis=2) > 0).sum())


def test_face_and_hand_points_are_drawn_small_body_points_large():
    blank = np.zeros((480, 640, 3), np.uint8)
    kps = np.zeros((1, 136, 2))
    scores = np.zeros((1, 136))
    kps[0, 5] = (100, 100)  # left shoulder: a body point
    kps[0, 40] = (300, 100)  # a face point
    kps[0, 100] = (500, 100)  # a left-hand point
    scores[0, [5, 40, 100]] = 1.0
    out = draw_poses(blank, kps, scores, HALPE_136, min_score=0.5)
    body = _painted(out[80:120, 80:120])
    face = _painted(out[80:120, 280:320])
    hand = _painted(out[80:120, 480:520])
    assert body > 20 and 0 < face < body / 3 and 0 < hand < body / 3, (body, face, hand)


def test_a_body_set_draws_every_point_the_same():
    blank = np.zeros((480, 640, 3), np.uint8)
    kps = np.array([[[100.0, 100.0]] * 17])
    kps[0, 9] = (300, 100)  # left wrist: no limb to the nose
    scores = np.zeros((1, 17))
    scores[0, [0, 9]] = 1.0
    out = draw_poses(blank, kps, scores, COCO_17, min_score=0.5)
    assert _painted(out[80:120, 80:120]) == _painted(out[80:120, 280:320]) > 20
