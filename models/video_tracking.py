"""One video's frames, streamed in frame order: PoseFlow over them, and one status per frame.

The per-video stage of the labelling pipeline reads a video's frame rows one shard at a time, in frame order
(``store.video_publish``). What it computes over those rows is here, as plain NumPy so that a test can call it on
hand-made arrays:

* ``VideoTracker`` feeds each frame's poses to a ``models.poseflow.PoseFlowTracker`` and decides which point
  correspondences the tracker may read. The tracker carries its ``link_len`` window from one shard to the next, so
  tracking a video shard by shard gives the ids of tracking it whole.
* ``FrameLedger`` keeps one status per frame (``"ok"``, an error status, or ``"missing"`` for frames never seen)
  and picks one result row per frame when a retried task delivered a frame twice.

No Ray, no I/O: the caller reads the rows and writes the tables.
"""

from __future__ import annotations

import numpy as np

from models.correspondences import filter_for_tracking, filter_is_exact
from models.poseflow import PoseFlowTracker

__all__ = ["ERROR_STATUS", "VideoTracker", "FrameLedger"]

#: Status of a frame whose rows all carry errors, by the stage that failed; any other stage: "pose_error".
ERROR_STATUS = {"probe": "decode_error", "decode": "decode_error", "detect": "detect_error"}


class VideoTracker:
    """``PoseFlowTracker.update`` on a video's frames in frame order, fed one frame or one shard at a time.

    Correspondences: the decode stage pairs frame i with frame i − 1 (``models.correspondences``), while the tracker
    needs pairs from the previous frame *with detections*. When that is not frame i − 1 (an empty or failed frame in
    between) no such pairs exist, and the frame is tracked with AlphaPose's identity fallback (AlphaPose itself would
    match across the gap instead). Pairs are reduced to those the tracker's grades read
    (``models.correspondences.filter_for_tracking``) whenever that filter is exact for the tracker's parameters, so
    the ids are those of the unfiltered pairs.

    Args:
        tracker: the video's tracker, fresh; ``update`` advances it.

    Example:
        >>> import numpy as np
        >>> from models.poseflow import PoseFlowTracker
        >>> video = VideoTracker(PoseFlowTracker())
        >>> pose = np.array([[[100.0, 50.0], [120.0, 150.0]]])  # one person, two keypoints
        >>> video.update(0, pose, np.ones((1, 2)), np.ones(1), (320, 240)).tolist()
        [1]
        >>> video.update_frames([1, 2], [pose + 3, pose[:0]], [np.ones((1, 2)), np.ones((0, 2))],
        ...                     [np.ones(1), np.ones(0)], [(320, 240)] * 2, [None, None]).tolist()
        [1]
    """

    def __init__(self, tracker: PoseFlowTracker) -> None:
        self.tracker = tracker
        self._prev: tuple[int, np.ndarray] | None = None  # (frame index, poses) of the last frame with detections

    def update(
        self,
        frame_index: int,
        keypoints: np.ndarray,
        keypoint_scores: np.ndarray,
        pose_scores: np.ndarray,
        image_size: tuple[int, int],
        correspondences: np.ndarray | None = None,
    ) -> np.ndarray:
        """Track frame ``frame_index`` (frames must come in increasing order).

        Args:
            frame_index: the frame's index in the video.
            keypoints: float ``[N, K, 2]`` (x, y) source-image pixels; keypoint_scores: ``[N, K]``; pose_scores:
                ``[N]``.
            image_size: (W, H) pixels.
            correspondences: ``[M, 4]`` ORB point pairs (x, y in frame ``frame_index − 1``, x, y in this frame), or
                None when the decode stage produced none for this frame (first frame, identity fallback, off).

        Returns:
            int64 ``[N]`` track ids (1-based); empty for a frame without detections.
        """
        kp = np.asarray(keypoints, np.float64)
        pairs = self._pairs(frame_index, kp, image_size, correspondences) if len(kp) else None
        ids = self.tracker.update(
            kp,
            np.asarray(keypoint_scores, np.float64),
            np.asarray(pose_scores, np.float64),
            image_size=image_size,
            correspondences=pairs,
        )
        if len(kp):
            self._prev = (frame_index, kp)
        return ids

    def update_frames(
        self, frame_index, keypoints, keypoint_scores, pose_scores, image_size, correspondences
    ) -> np.ndarray:
        """``update`` on several frames in frame order (sequences with one entry per frame, as in ``update``);
        returns their ids concatenated, int64 ``[ΣN]``."""
        ids = [
            self.update(int(f), kp, ks, ps, size, c)
            for f, kp, ks, ps, size, c in zip(
                frame_index, keypoints, keypoint_scores, pose_scores, image_size, correspondences, strict=True
            )
        ]
        return np.concatenate(ids) if ids else np.zeros(0, np.int64)

    def _pairs(
        self, frame_index: int, kp: np.ndarray, image_size: tuple[int, int], correspondences: np.ndarray | None
    ) -> np.ndarray | None:
        """The pairs to hand ``PoseFlowTracker.update`` for this frame, or None (identity fallback)."""
        prev = self._prev
        if correspondences is None or prev is None or prev[0] != frame_index - 1:
            return None
        pairs = np.asarray(correspondences)
        params = self.tracker.params
        return filter_for_tracking(pairs, prev[1], kp, image_size, params) if filter_is_exact(params) else pairs


class FrameLedger:
    """Statuses of one video's frames, recorded in frame order: frames never seen between two recorded frames (or
    before ``fill``'s bound) are ``"missing"``.

    ``pop`` hands over the statuses recorded since the last ``pop`` (to stream them into a table);
    ``missing``/``first_missing`` count over the whole video.

    Example:
        >>> ledger = FrameLedger()
        >>> good, errors = ledger.add_shard(frame_index=[2, 0, 2], error=["", "", "bad"], stage=["", "", "decode"],
        ...                                 timestamp_s=[0.2, 0.0, 0.2], n_persons=[1, 3, 0])
        >>> good, errors
        ([1, 0], [2])
        >>> ledger.fill(4)
        >>> ledger.pop()[3], ledger.missing, ledger.first_missing
        (['ok', 'missing', 'ok', 'missing'], 2, 1)
    """

    def __init__(self) -> None:
        self.next_frame = 0  # first frame not recorded yet
        self.missing = 0
        self.first_missing = -1
        self._index: list[int] = []
        self._ts: list[float] = []
        self._n: list[int] = []
        self._status: list[str] = []

    def __len__(self) -> int:
        """Statuses recorded and not popped yet."""
        return len(self._index)

    def add(self, frame_index: int, timestamp_s: float, n_persons: int, status: str) -> None:
        """Record one frame (after marking the frames skipped since the last one as missing)."""
        self.fill(frame_index)
        self._append(frame_index, timestamp_s, n_persons, status)
        self.next_frame = frame_index + 1

    def fill(self, upto: int) -> None:
        """Mark every frame from ``next_frame`` up to ``upto`` (exclusive) as missing."""
        for g in range(self.next_frame, upto):
            if self.first_missing < 0:
                self.first_missing = g
            self.missing += 1
            self._append(g, float("nan"), 0, "missing")
        self.next_frame = max(self.next_frame, upto)

    def _append(self, frame_index: int, timestamp_s: float, n_persons: int, status: str) -> None:
        self._index.append(frame_index)
        self._ts.append(timestamp_s)
        self._n.append(n_persons)
        self._status.append(status)

    def add_shard(self, frame_index, error, stage, timestamp_s, n_persons) -> tuple[list[int], list[int]]:
        """Record one shard's rows (any order, duplicates allowed; the shard must follow the frames recorded so far).

        A frame's first good row (in row order) is its result; a frame whose rows all carry errors gets the status of
        the last of them (``ERROR_STATUS``); error rows with ``frame_index < 0`` (a whole shard failed) record no
        frame.

        Args:
            frame_index: int ``[B]``; error: ``[B]`` strings, empty when the row is good; stage: ``[B]`` the failed
                stage of error rows; timestamp_s: float ``[B]`` seconds; n_persons: int ``[B]``.

        Returns:
            (good, errors): the good rows, one per frame, in frame order; all error rows, in frame order (stable).
        """
        frame_index = np.asarray(frame_index, np.int64)
        err = [str(e) for e in error]
        status: dict[int, str] = {}
        rows: dict[int, int] = {}
        errors: list[int] = []
        for r in np.argsort(frame_index, kind="stable"):
            f = int(frame_index[r])
            if err[r]:
                errors.append(int(r))
                if f >= 0 and f not in rows:
                    status[f] = ERROR_STATUS.get(str(stage[r]) or "unknown", "pose_error")
            elif f not in rows:  # a retried task may deliver a frame twice: keep one copy
                rows[f] = int(r)
                status[f] = "ok"
        for f in sorted(status):
            r = rows.get(f)
            self.add(
                f,
                float(timestamp_s[r]) if r is not None else float("nan"),
                int(n_persons[r]) if r is not None else 0,
                status[f],
            )
        return [rows[f] for f in sorted(rows)], errors

    def pop(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """The statuses recorded since the last ``pop``: frame_index int64 ``[F]``, timestamp_s float64 ``[F]`` (NaN
        where unknown), n_persons int64 ``[F]``, status ``F`` strings."""
        out = (
            np.asarray(self._index, np.int64),
            np.asarray(self._ts, np.float64),
            np.asarray(self._n, np.int64),
            self._status,
        )
        self._index, self._ts, self._n, self._status = [], [], [], []
        return out
