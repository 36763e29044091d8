"""Image correspondences for PoseFlow: ORB matches between consecutive frames, compact and filtered to the people.

PoseFlow's two correspondence-based affinities (``models.poseflow``; ``dm_iou`` and ``pose_iou_dm`` of AlphaPose's
``trackers/PoseFlow/utils.py``) need point pairs between two frames. This module computes them where the pixels
are (the decode stage, so that tracking afterwards needs only tabular data) as AlphaPose's
``trackers/PoseFlow/matching.py`` ``orb_matching`` does: OpenCV ORB (10 000 features, FAST score), 2-nearest-neighbour
Hamming matching, Lowe's ratio test at 0.8, coordinates truncated to int, and the two fallbacks to AlphaPose's
identity correspondence (too few keypoints, too few matches), which is returned as ``None`` (never as per-pixel rows;
``models.poseflow`` computes that case analytically). Each frame's ORB features are computed once and reused for both
pairs it belongs to (AlphaPose detects them twice); ``video_correspondences(..., workers=2)`` runs the per-frame and
per-pair calls in a thread pool (same results). ``OrbParams.matcher`` picks the 2-NN search: exact over all points
(default), AlphaPose's FLANN, or exact inside a ±window square (a faster deviation, see ``OrbParams``). Where the time
goes on the Bonn clip (960×540, ~5 600 keypoints a frame, 2 cores): ORB detection ~8–9 ms a frame (on one core:
OpenCV does not parallelise it), a bruteforce match ~105–130 ms a pair (~200 ms on one core; ``batchDistance`` uses
OpenCV's threads), a windowed match ~15–17 ms at ±48, mostly its ~1.7 million in-window Hamming distances (~7 ns
each in ``cv2.batchDistance``). ``filter_for_tracking`` then keeps only the pairs that the
tracker's grades can read, once both frames' poses are known, so that a pair of frames travels as a few kilobytes of
int16 instead of ~10 000 float rows; the grades computed from the filtered pairs are identical.

Array conventions: frames are uint8 ``[H, W, 3]`` RGB (what PyAV's ``rgb24`` gives). AlphaPose hands OpenCV an RGB
image too (it converts ``imread``'s BGR to RGB first, and ORB's grey conversion assumes BGR), so passing our RGB
frames unchanged reproduces its grey image. Correspondences are integer ``[M, 4]`` rows (x_t, y_t, x_t1, y_t1) in
pixels, int16 when every coordinate fits (always, for frames under 32 768 px), else int32. Boxes are AlphaPose's
``[x_min, x_max, y_min, y_max]`` with inclusive bounds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from models.poseflow import PoseFlowParams, pose_boxes

__all__ = [
    "OrbParams",
    "OrbFeatures",
    "MATCHERS",
    "orb_features",
    "match_features",
    "orb_correspondences",
    "video_correspondences",
    "compact_correspondences",
    "alphapose_file_bytes",
    "filter_to_boxes",
    "tracking_regions",
    "filter_is_exact",
    "filter_for_tracking",
]

MATCHERS = ("bruteforce", "flann", "windowed")
Matcher = Literal["bruteforce", "flann", "windowed"]


@dataclass(frozen=True, kw_only=True)
class OrbParams:
    """ORB matching constants (AlphaPose's ``trackers/PoseFlow/matching.py`` ``orb_matching``), AlphaPose's values as
    defaults."""

    nfeatures: int = 10000  # ORB_create(nfeatures=10000, scoreType=ORB_FAST_SCORE), other ORB settings default
    ratio: float = 0.8  # Lowe's ratio test: keep the best match if its distance is < ratio · second best
    min_keypoint_product: int = 400  # identity fallback when len(kp_t) · len(kp_t1) < this
    # Identity fallback when fewer matches survive. AlphaPose's rule is "the match file has fewer
    # than 1000 bytes"; a line is "%d %d %d %d %f \n", 27 bytes for 3-digit coordinates and a 2-digit distance
    # (most rows of a 960×540 frame), so 37 lines make 999 bytes and 38 lines 1026: 38 matches reproduces the rule
    # there. Smaller frames (2-digit coordinates, 23-byte lines) needed up to 44; set emulate_file_size for the
    # exact byte rule.
    min_matches: int = 38
    emulate_file_size: bool = False  # use AlphaPose's exact "< 1000 bytes" rule instead of min_matches
    # "bruteforce": exact 2-NN by Hamming distance (cv2.batchDistance), what FLANN's LSH search approximates. On the
    # 40 pairs of the Bonn test clip: identical pairs for 30; for the other 10 FLANN kept the same pairs plus 1–2
    # more (it missed a query's true second neighbour, so the ratio test passed). ~5× faster here, deterministic.
    # "flann": AlphaPose's matcher exactly (FLANN LSH, table 12, key 12, multi-probe 2, checks 100).
    # "windowed" (a deviation): exact 2-NN among the frame-t+1 points with |x_t1 − x_t| ≤ window and
    # |y_t1 − y_t| ≤ window (float32 keypoint coordinates, compared exactly), then the same ratio test. It differs
    # from "bruteforce" in two ways: a match that moved more than `window` px is lost (or replaced by the best point
    # inside the window), and the ratio test's second neighbour is the second best inside the window (never closer
    # than the global one), so more queries pass. On the 40 consecutive pairs of the Bonn test clip (rows compared
    # exactly), window 48: 98.1% of bruteforce's 75 491 pairs found, 85.5% of its own 86 638 are bruteforce's, no
    # frame pair identical; window 24: 97.8% / 81.3%; window 16: 97.4% / 78.9%. Tracking on the benchmark's
    # scenarios (ID switches, MOTA, IDF1) equals bruteforce's with window 48; windows 24 and 16 add ID switches when
    # only every 5th frame is tracked (motion over 5 frames exceeds the window). Cost here (one Python thread):
    # ~15–17 ms a pair at 48, ~8–10 at 24, ~7 at 16; bruteforce ~105–130.
    matcher: Matcher = "bruteforce"
    window: int = 48  # pixels, "windowed" only
    lsh_table_number: int = 12
    lsh_key_size: int = 12
    lsh_multi_probe_level: int = 2
    flann_checks: int = 100

    def __post_init__(self) -> None:
        if self.matcher not in MATCHERS:
            raise ValueError(f"OrbParams.matcher={self.matcher!r}; choose one of {', '.join(MATCHERS)}")
        for name in (
            "nfeatures",
            "min_keypoint_product",
            "min_matches",
            "window",
            "lsh_table_number",
            "lsh_key_size",
            "lsh_multi_probe_level",
            "flann_checks",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"OrbParams.{name}={value!r} must be an int >= 0")
        if self.nfeatures < 1 or self.window < 1:
            raise ValueError(f"OrbParams.nfeatures={self.nfeatures} and window={self.window} must be >= 1")
        if not 0.0 < float(self.ratio) <= 1.0:
            raise ValueError(f"OrbParams.ratio={self.ratio!r} must be in (0, 1]")
        if not isinstance(self.emulate_file_size, bool):
            raise TypeError(f"OrbParams.emulate_file_size must be a bool, got {self.emulate_file_size!r}")


@dataclass(frozen=True)
class OrbFeatures:
    """ORB keypoints of one frame: ``points`` float32 ``[N, 2]`` (x, y) pixels, ``descriptors`` uint8 ``[N, 32]``."""

    points: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    img = np.asarray(frame)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"frame must be uint8 [H, W, 3] RGB, got {img.dtype} {img.shape}")
    return img


def orb_features(frame: np.ndarray, params: OrbParams = OrbParams()) -> OrbFeatures:
    """ORB keypoints and descriptors of one uint8 RGB frame (as ``orb_matching``).

    Args:
        frame: uint8 ``[H, W, 3]`` RGB. Passed to OpenCV unchanged, as AlphaPose passes its RGB-converted image.
        params: ``nfeatures`` is read.

    Returns:
        ``OrbFeatures`` (possibly empty).
    """
    img = _check_frame(frame)
    orb = cv2.ORB_create(nfeatures=params.nfeatures, scoreType=cv2.ORB_FAST_SCORE)
    keypoints, descriptors = orb.detectAndCompute(img, None)
    if descriptors is None or not keypoints:
        return OrbFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    # KeyPoint_convert copies the float32 (x, y) in C: the same values as [kp.pt for kp in keypoints], ~1 ms less
    # per frame at 10 000 features.
    points = np.asarray(cv2.KeyPoint_convert(keypoints), dtype=np.float32).reshape(-1, 2)
    return OrbFeatures(points, descriptors)


def _two_nearest_bruteforce(d_t: np.ndarray, d_t1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dist, nidx = cv2.batchDistance(d_t, d_t1, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    return dist.astype(np.int64), nidx.astype(np.int64)


def _two_nearest_flann(d_t: np.ndarray, d_t1: np.ndarray, params: OrbParams) -> tuple[np.ndarray, np.ndarray]:
    index_params = dict(
        algorithm=6,
        table_number=params.lsh_table_number,
        key_size=params.lsh_key_size,
        multi_probe_level=params.lsh_multi_probe_level,
    )  # 6 = FLANN_INDEX_LSH
    matcher = cv2.FlannBasedMatcher(index_params, dict(checks=params.flann_checks))
    dist = np.full((len(d_t), 2), -1, np.int64)
    nidx = np.full((len(d_t), 2), -1, np.int64)
    for i, pair in enumerate(matcher.knnMatch(d_t, d_t1, k=2)):
        for j, m in enumerate(pair[:2]):
            dist[i, j] = int(m.distance)
            nidx[i, j] = m.trainIdx
    return dist, nidx


def _sortable_f32(values: np.ndarray) -> np.ndarray:
    """int64 keys in [0, 2³²) that order like the float32 ``values``: the IEEE bit patterns read as int32 order the
    non-negative floats; the negative ones come reversed, so they are mirrored below them."""
    bits = (np.asarray(values, np.float32) + np.float32(0)).view(np.int32).astype(np.int64)  # + 0: -0.0 → +0.0
    return np.where(bits < 0, -(1 << 31) - 1 - bits, bits) + (1 << 31)


def _f32_bounds(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 (lo, hi) per value with, for every float32 t, ``t >= lo ⇔ t >= v − window`` and
    ``t <= hi ⇔ t <= v + window`` in exact arithmetic (v − window is exact in float64, then rounded inwards)."""
    v = np.asarray(values, np.float32).astype(np.float64)
    lo64, hi64 = v - window, v + window
    lo, hi = lo64.astype(np.float32), hi64.astype(np.float32)
    up, down = lo.astype(np.float64) < lo64, hi.astype(np.float64) > hi64
    lo[up] = np.nextafter(lo[up], np.float32(np.inf))
    hi[down] = np.nextafter(hi[down], np.float32(-np.inf))
    return lo, hi


def _masked_two_nearest(
    q_desc: np.ndarray,
    t_desc: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    xlo: np.ndarray,
    xhi: np.ndarray,
    ylo: np.ndarray,
    yhi: np.ndarray,
    k: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """K-NN of each query among the candidates inside its [xlo, xhi] × [ylo, yhi] (bounds ``[Q, 1]``, inclusive)."""
    mask = np.greater_equal(tx, xlo)
    mask &= np.less_equal(tx, xhi)
    mask &= np.greater_equal(ty, ylo)
    mask &= np.less_equal(ty, yhi)
    return cv2.batchDistance(q_desc, t_desc, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=k, mask=mask.view(np.uint8))


def _two_nearest_windowed(
    f_t: OrbFeatures, f_t1: OrbFeatures, window: int, *, strip: int | None = None, group: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Exact 2-NN of each frame-t descriptor among the frame-t+1 points with |Δx| ≤ window and |Δy| ≤ window.

    The window test is exact (float32 coordinates compared without rounding). Output as ``_two_nearest_bruteforce``:
    int64 ``[N, 2]`` Hamming distances and frame-t+1 indices, −1 where the window holds fewer than two points. The
    two distances are those of an exhaustive search of the window; among equal distances the index is any of them
    (which one cannot change ``match_features``: a tie for first place fails the ratio test).

    How (Hamming distances dominate, ~7 ns each in ``cv2.batchDistance``; everything else costs a few ns per tested
    entry plus ~100 Python iterations per pair): the frame-t points are cut into horizontal strips of ``strip`` rows
    (default max(window, 32)) and sorted by x inside each; every run of ``group`` consecutive points of a strip is
    one ``batchDistance`` call. Its candidates are one contiguous slice of the frame-t+1 points, which are copied to
    every strip they can serve (floor(y) within ``window`` rows of it) and sorted by x there: the slice spans
    [x_first − window, x_last + window], a superset of each member's window, and a mask built from exact per-query
    float32 bounds restricts each query to its own window (a masked entry costs ~1 ns instead of a distance).
    """
    n, m = len(f_t), len(f_t1)
    dist = np.full((n, 2), -1, np.int64)
    nidx = np.full((n, 2), -1, np.int64)
    if n == 0 or m == 0:
        return dist, nidx
    w = int(window)
    h = int(strip) if strip else max(w, 32)
    p_t, p_t1 = np.asarray(f_t.points, np.float32), np.asarray(f_t1.points, np.float32)
    # Queries sorted by (strip, x); strips numbered from 0. (np.take: far faster than fancy indexing of 2-D rows.)
    sq = np.floor(p_t[:, 1]).astype(np.int64) // h
    s0 = int(sq.min())
    sq -= s0
    order_q = np.argsort((sq << 32) + _sortable_f32(p_t[:, 0]), kind="stable")
    sq = np.take(sq, order_q)
    qx, qy = np.take(p_t[:, 0], order_q), np.take(p_t[:, 1], order_q)
    # Frame-t+1 points, one copy per strip s whose points can have them in their window: a query of strip s has
    # floor(y) in [s·h, (s+1)·h), so a point within the window has floor(y) in [s·h − w, (s+1)·h + w − 1].
    tx_all, ty_all = p_t1[:, 0].copy(), p_t1[:, 1].copy()
    by_x = np.argsort(_sortable_f32(tx_all), kind="stable")
    yi = np.floor(np.take(ty_all, by_x)).astype(np.int64) - s0 * h
    s_lo = np.maximum(-((w - 1 + h - yi) // h), 0)  # ceil((yi − w + 1 − h) / h)
    s_hi = np.minimum((yi + w) // h, int(sq[-1]))
    reps = np.maximum(s_hi - s_lo + 1, 0)
    rep_t = np.repeat(by_x, reps)
    rep_s = np.arange(len(rep_t)) - np.repeat(np.cumsum(reps) - reps - s_lo, reps)
    by_strip = np.argsort(rep_s, kind="stable")  # keeps the x order inside each strip
    rep_t, rep_s = np.take(rep_t, by_strip), np.take(rep_s, by_strip)
    tx, ty = np.take(tx_all, rep_t), np.take(ty_all, rep_t)
    tkey = (rep_s << 32) + _sortable_f32(tx)
    # Groups of `group` consecutive queries inside a strip, and each group's slice of candidates.
    strip_starts = np.r_[0, np.flatnonzero(np.diff(sq)) + 1]
    rank = np.arange(n) - np.repeat(strip_starts, np.diff(np.r_[strip_starts, n]))
    gs = np.flatnonzero(rank % group == 0)
    ge = np.r_[gs[1:], n]
    xlo, xhi = _f32_bounds(qx, w)
    ylo, yhi = _f32_bounds(qy, w)
    lo = np.searchsorted(tkey, (sq[gs] << 32) + _sortable_f32(xlo[gs]), side="left")
    hi = np.searchsorted(tkey, (sq[ge - 1] << 32) + _sortable_f32(xhi[ge - 1]), side="right")
    qd = np.take(f_t.descriptors, order_q, axis=0)
    td = np.take(f_t1.descriptors, rep_t, axis=0)
    xlo, xhi, ylo, yhi = xlo[:, None], xhi[:, None], ylo[:, None], yhi[:, None]
    d_parts, i_parts = [], []
    for a, b, ts, te in zip(gs.tolist(), ge.tolist(), lo.tolist(), hi.tolist()):
        if te - ts < 2:  # (rare) no candidate, or one: K = 2 needs two
            d, i = np.full((b - a, 2), -1, np.int32), np.full((b - a, 2), -1, np.int32)
            if te > ts:
                d[:, :1], i[:, :1] = _masked_two_nearest(
                    qd[a:b], td[ts:te], tx[ts:te], ty[ts:te], xlo[a:b], xhi[a:b], ylo[a:b], yhi[a:b], k=1
                )
        else:
            d, i = _masked_two_nearest(qd[a:b], td[ts:te], tx[ts:te], ty[ts:te], xlo[a:b], xhi[a:b], ylo[a:b], yhi[a:b])
        d_parts.append(d)
        i_parts.append(i)
    d_sorted, i_sorted = np.concatenate(d_parts), np.concatenate(i_parts)
    valid = i_sorted >= 0  # batchDistance leaves index −1 where the window has fewer than K points
    slice_start = np.repeat(lo, ge - gs)[:, None]
    dist[order_q] = np.where(valid, d_sorted, -1)
    nidx[order_q] = np.where(valid, np.take(rep_t, np.where(valid, i_sorted + slice_start, 0)), -1)
    return dist, nidx


def alphapose_file_bytes(correspondences: np.ndarray, distances: np.ndarray) -> int:
    """Size in bytes of AlphaPose's ``<t>_<t1>_orb.txt`` for these matches (lines ``"%d %d %d %d %f \\n"``).

    Args:
        correspondences: int ``[M, 4]``; distances: ``[M]`` Hamming distances of the kept matches.
    """
    corr = np.asarray(correspondences, dtype=np.int64).reshape(-1, 4)
    int_text = np.char.str_len(corr.astype(str))  # "%d" widths, sign included
    float_text = np.char.str_len(np.char.mod("%f", np.asarray(distances, dtype=np.float64)))
    return int(int_text.sum() + float_text.sum() + 6 * len(corr))  # 4 spaces + " \n" per line


def compact_correspondences(correspondences: np.ndarray) -> np.ndarray:
    """``[M, 4]`` integer pairs as int16 when every coordinate fits in [-32768, 32767], else int32."""
    corr = np.asarray(correspondences).reshape(-1, 4)
    if corr.size and (corr.min() < np.iinfo(np.int16).min or corr.max() > np.iinfo(np.int16).max):
        return corr.astype(np.int32)
    return corr.astype(np.int16)


def match_features(f_t: OrbFeatures, f_t1: OrbFeatures, params: OrbParams = OrbParams()) -> np.ndarray | None:
    """ORB correspondences between two frames' features (as ``orb_matching``).

    Args:
        f_t, f_t1: ``orb_features`` of frame t and frame t+1.
        params: matching constants.

    Returns:
        int16/int32 ``[M, 4]`` rows (x_t, y_t, x_t1, y_t1), coordinates truncated to int as AlphaPose writes them,
        in frame-t keypoint order; or None, meaning AlphaPose's identity fallback, when
        ``len(f_t) · len(f_t1) < min_keypoint_product`` or fewer than ``min_matches`` matches survive.
    """
    if len(f_t) * len(f_t1) < params.min_keypoint_product or len(f_t1) < 2:
        return None  # (with one frame-t+1 keypoint no query has the two neighbours the ratio test needs)
    if params.matcher == "bruteforce":
        dist, nidx = _two_nearest_bruteforce(f_t.descriptors, f_t1.descriptors)
    elif params.matcher == "flann":
        dist, nidx = _two_nearest_flann(f_t.descriptors, f_t1.descriptors, params)
    else:
        dist, nidx = _two_nearest_windowed(f_t, f_t1, params.window)
    if dist.shape[1] < 2:
        return None
    # AlphaPose drops queries with fewer than 2 neighbours, then keeps m0 if m0.distance < 0.80 * m1.distance.
    has_two = (nidx[:, 0] >= 0) & (nidx[:, 1] >= 0)
    keep = has_two & (dist[:, 0].astype(np.float64) < params.ratio * dist[:, 1].astype(np.float64))
    query = np.flatnonzero(keep)
    train = nidx[query, 0]
    # "%d" of a non-negative float truncates toward zero.
    corr = np.trunc(np.concatenate([f_t.points[query], f_t1.points[train]], axis=1).astype(np.float64))
    corr = corr.astype(np.int64)
    if params.emulate_file_size:
        too_few = alphapose_file_bytes(corr, dist[query, 0]) < 1000
    else:
        too_few = len(corr) < params.min_matches
    return None if too_few else compact_correspondences(corr)


def orb_correspondences(
    frame_t: np.ndarray, frame_t1: np.ndarray, params: OrbParams = OrbParams()
) -> np.ndarray | None:
    """``match_features(orb_features(frame_t), orb_features(frame_t1))``: AlphaPose's ``orb_matching`` for one pair.

    Args:
        frame_t, frame_t1: uint8 ``[H, W, 3]`` RGB frames.

    Returns:
        int16/int32 ``[M, 4]`` (x_t, y_t, x_t1, y_t1), or None for the identity fallback.
    """
    return match_features(orb_features(frame_t, params), orb_features(frame_t1, params), params)


def video_correspondences(
    frames: Iterable[np.ndarray], params: OrbParams = OrbParams(), workers: int = 1
) -> list[np.ndarray | None]:
    """Correspondences of every consecutive pair, each frame's ORB features computed once.

    Args:
        frames: uint8 RGB frames in order (any iterable: frames are consumed one at a time).
        params: ORB constants.
        workers: threads. 1 (default) computes frame by frame in the calling thread, as the pipeline's decode stage
            does. More runs ``orb_features`` and ``match_features`` calls concurrently in a thread pool (OpenCV and
            NumPy release the GIL; ORB detection itself uses one core, measured): same results, with about
            ``2·workers + 3`` frames in flight at most.

    Returns:
        One entry per frame: entry t relates frame t−1 to frame t (None for t = 0 and for identity fallbacks).
        This is the layout ``models.poseflow.track_video`` takes.
    """
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers={workers!r} must be an int >= 1")
    out: list[np.ndarray | None] = []
    if workers == 1:
        previous = None
        for frame in frames:
            features = orb_features(frame, params)
            out.append(None if previous is None else match_features(previous, features, params))
            previous = features
        return out

    def match(f_t: Future, f_t1: Future) -> np.ndarray | None:
        return match_features(f_t.result(), f_t1.result(), params)

    # Tasks are queued as ORB(t), match(t−2, t−1), ORB(t+1), …: a match waits only on ORB tasks queued before it
    # (so already taken by a worker: no deadlock), and one frame of look-ahead keeps both workers busy.
    with ThreadPoolExecutor(max_workers=int(workers)) as pool:
        features: list[Future] = []
        pending: deque[Future | None] = deque([None])  # entry 0: no pair
        for frame in frames:
            features.append(pool.submit(orb_features, frame, params))
            if len(features) >= 3:
                pending.append(pool.submit(match, features[-3], features[-2]))
                features.pop(0)
            while len(pending) > 2 * workers:
                done = pending.popleft()
                out.append(None if done is None else done.result())
        if len(features) == 2:
            pending.append(pool.submit(match, features[0], features[1]))
        out.extend(None if done is None else done.result() for done in pending)
    return out if features else []  # no frames: no entries


# ----------------------------------------------------------------------------------------------------------------
# Filtering to what the tracker reads.
# ----------------------------------------------------------------------------------------------------------------


def filter_to_boxes(
    correspondences: np.ndarray | None, regions_t: np.ndarray, regions_t1: np.ndarray
) -> np.ndarray | None:
    """Keep the pairs whose frame-t point is in some region of frame t OR whose frame-t+1 point is in one of t+1.

    Why both sides: ``dm_iou`` = |S₁∩S₂| / |S₁∪S₂| with S₁ the pairs whose frame-t point is in the candidate's box
    and S₂ those whose frame-t+1 point is in the detection's box. Keeping only pairs that land in frame-t+1 boxes
    would drop pairs of S₁ \\ S₂ and shrink the union; keeping every pair of S₁ and of S₂ leaves both sets, hence
    every IoU, unchanged.

    Args:
        correspondences: ``[M, 4]`` (x_t, y_t, x_t1, y_t1), or None (identity fallback, returned unchanged).
        regions_t: ``[R, 4]`` [x_min, x_max, y_min, y_max] in frame t (inclusive bounds).
        regions_t1: ``[S, 4]`` in frame t+1.

    Returns:
        The kept rows in their original order, compacted to int16 when they fit (see ``compact_correspondences``),
        or None when the input was None.
    """
    if correspondences is None:
        return None
    corr = np.asarray(correspondences)
    rows = corr.reshape(-1, corr.shape[-1])[:, :4]
    keep = np.zeros(len(rows), dtype=bool)
    for regions, (cx, cy) in ((regions_t, (0, 1)), (regions_t1, (2, 3))):
        r = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
        if len(r):
            # [R, M] with the pairs along the contiguous axis, reduced over the few regions: ~2.5× faster than
            # [M, R] with .any(axis=1) (a reduction over a length-R axis for every pair).
            x, y = rows[:, cx].astype(np.float64), rows[:, cy].astype(np.float64)
            inside = (x >= r[:, 0, None]) & (x <= r[:, 1, None]) & (y >= r[:, 2, None]) & (y <= r[:, 3, None])
            keep |= np.logical_or.reduce(inside, axis=0)
    kept = rows[keep]
    return compact_correspondences(kept) if np.issubdtype(kept.dtype, np.integer) else kept


def tracking_regions(
    keypoints: np.ndarray, image_size: tuple[int, int], params: PoseFlowParams = PoseFlowParams()
) -> np.ndarray:
    """Regions of one frame that PoseFlow's correspondence terms can read: 2 boxes per person.

    For each pose: its AlphaPose box (``dm_iou``, ``get_box``) and the hull of its keypoint squares,
    [min x − mag, max x + mag] × [min y − mag, max y + mag] (``pose_iou_dm``; every square lies inside it).

    Args:
        keypoints: float ``[N, K, 2]`` pixels; image_size: (W, H); params: ``mag`` and ``box_expand`` are read.

    Returns:
        float64 ``[2N, 4]`` [x_min, x_max, y_min, y_max].
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[0] == 0:
        return np.zeros((0, 4), dtype=np.float64)
    boxes = pose_boxes(kp, image_size, params.box_expand).astype(np.float64)
    lo = kp.min(axis=1) - params.mag
    hi = kp.max(axis=1) + params.mag
    hulls = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=1)
    return np.concatenate([boxes, hulls])


def filter_is_exact(params: PoseFlowParams) -> bool:
    """Whether ``filter_for_tracking`` keeps every grade of a tracker with ``params``: true unless the released mode
    gives candidates older than the previous frame a weight on the correspondence terms (``weights_old``)."""
    return params.mode == "improved" or (params.weights_old[0] == 0 and params.weights_old[2] == 0)


def filter_for_tracking(
    correspondences: np.ndarray | None,
    keypoints_t: np.ndarray,
    keypoints_t1: np.ndarray,
    image_size: tuple[int, int],
    params: PoseFlowParams = PoseFlowParams(),
) -> np.ndarray | None:
    """Drop the pairs no PoseFlow grade can read, keeping every grade identical.

    Frame t must be the frame whose records are the tracker's "recent" candidates, i.e. the previous frame with
    detections (``PoseFlowTracker.update``). Exact whenever only recent candidates use the correspondence terms:
    true for the released weights (``weights_old`` gives them weight 0) and for ``mode="improved"`` (it reads the
    pairs inside the recent candidates' boxes only).

    Args:
        correspondences: ``[M, 4]`` from ``match_features``, or None (returned unchanged).
        keypoints_t: float ``[N_t, K, 2]`` poses of frame t; keypoints_t1: ``[N_t1, K, 2]`` of frame t+1.
        image_size: (W, H) (both frames of a video have the same size).
        params: the tracker's parameters (``mag``, ``box_expand``).

    Returns:
        The kept pairs (int16 when they fit), or None.
    """
    if correspondences is None:
        return None
    if not filter_is_exact(params):
        raise ValueError(
            "filter_for_tracking is exact only when weights_old gives dm_iou and pose_iou_dm weight 0 "
            f"(older candidates would read pairs outside frame t's poses); got {params.weights_old}"
        )
    return filter_to_boxes(
        correspondences,
        tracking_regions(keypoints_t, image_size, params),
        tracking_regions(keypoints_t1, image_size, params),
    )
