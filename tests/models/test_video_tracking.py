"""``models.video_tracking``: the per-video algorithm, called on hand-made arrays (the end-to-end behaviour is
pinned by tests/actors/test_publish.py and the Bonn oracle runs)."""

from __future__ import annotations

import doctest

import numpy as np

import models.video_tracking
from models.poseflow import PoseFlowTracker
from models.video_tracking import VideoTracker


def test_docstring_examples_run():
    assert doctest.testmod(models.video_tracking, raise_on_error=True).attempted >= 2


def test_frame_by_frame_equals_one_batch_of_frames():
    """Feeding frames one at a time or as one shard gives the same ids (the tracker carries its window)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(50, 250, (3, 17, 2))
    frames = [base + 2.0 * t for t in range(6)]
    scores = [np.ones((3, 17))] * 6
    pose_scores = [np.ones(3)] * 6
    one = VideoTracker(PoseFlowTracker())
    ids_one = [one.update(t, frames[t], scores[t], pose_scores[t], (320, 320)) for t in range(6)]
    many = VideoTracker(PoseFlowTracker())
    ids_many = many.update_frames(list(range(6)), frames, scores, pose_scores, [(320, 320)] * 6, [None] * 6)
    np.testing.assert_array_equal(np.concatenate(ids_one), ids_many)
    assert sorted(set(np.concatenate(ids_one).tolist())) == [1, 2, 3]  # three people, three stable ids
