"""Pose NMS: AlphaPose's parametric pose NMS (RMPE §3.3), and OKS-NMS / soft-OKS-NMS as alternatives.

The pose-NMS stage runs once per frame on every pose the SPPE produced for that frame: redundant poses of one
person are eliminated around a reference pose and merged into it. ``pose_nms`` reproduces the decisions of
AlphaPose's ``alphapose/utils/pPose_nms.py`` at commit c60106d (``pose_nms`` → ``pose_nms_body``, with
``get_parametric_distance``, ``PCK_match`` and ``p_merge_fast``) for the body path (COCO-17, Halpe-26 and every K
other than 133/136): the reference-pose order, the eliminated sets, the merged keypoints and scores, and the output
filters. It is pure NumPy/PyTorch (no Ray) and works on NumPy arrays or on torch tensors on any device, returning
the same kind it was given.

How it is organised: a pair's elimination decision depends only on the pair, so all of them are computed up front
into a boolean "p eliminates i" matrix ``[N, N]``, and the sequential part of the algorithm (pick the best remaining
pose, remove what it eliminates) then only touches index sets (Python integers used as bit sets); the merge of all
clusters is one more vectorised step. This gives exactly the decisions of AlphaPose's per-pick loop. The matrix is
built in two vectorised passes, float64: a bound from the N×N gaps between the poses' keypoint bounding boxes
settles every pair too far apart for any rule to fire (most pairs of a real frame), then the K keypoint distances,
parametric similarity and PCK count of all remaining pairs are computed at once by broadcasting over a
``[K, pairs]`` block (each unordered pair once; the similarity is symmetric, the match count is taken both ways);
below 16 poses the prefilter costs more than it saves and all N×N pairs are computed as one ``[K, N, N]`` block.
"Exactly" is up to rounding: raypose computes in float64 where AlphaPose computes in its tensors' dtype (float32),
so only a value within float32 rounding of a threshold can be decided differently.

Conventions: keypoints are (x, y) in source-image pixels, boxes are (x1, y1, x2, y2) in the same pixels, scores
are raw heatmap maxima (they may be negative, as in AlphaPose, and are not clamped). Inputs are never modified.

Deviations from AlphaPose are marked in the code with ``Deviation from AlphaPose:`` and the AlphaPose function they
depart from; they are the in-place score fill (``pose_nms_body``), the global constant override (``pose_nms``), the
full-body path's bugs (``get_parametric_distance`` with ``use_dist_mask``, ``PCK_match_fullbody``) and a corner of
the pick loop that AlphaPose's constants never reach (see ``_greedy_picks``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.keypoints import (
    COCO_WHOLEBODY133_OFFICIAL_SIGMAS,
    HALPE136_OKS_IOU_SIGMAS,
    keypoint_set_for_num_joints,
)

__all__ = [
    "PoseNMSParams",
    "PoseNMSResult",
    "BODY_PARAMS",
    "WHOLEBODY_REGRESSION_PARAMS",
    "NMS_METHODS",
    "STAGE_METHODS",
    "FULLBODY_NUM_KEYPOINTS",
    "pose_nms",
    "parametric_pose_nms",
    "oks_nms",
    "soft_oks_nms",
    "oks_matrix",
    "pairwise_pose_similarity",
]

NMS_METHODS = ("parametric", "oks", "soft_oks")
#: What the pipeline's pose-NMS stage accepts: an NMS method above, or ``"crowd_association"``: CrowdPose's global
#: joint association *instead of* NMS (AlphaPose ``--matching``; ``models.crowdpose``). It needs the SPPE's joint
#: candidates, so ``pose_nms`` itself refuses it; ``actors.pose_nms.apply_pose_nms`` routes it.
STAGE_METHODS = NMS_METHODS + ("crowd_association",)
NmsMethod = Literal["parametric", "oks", "soft_oks", "crowd_association"]

# Keypoint counts AlphaPose's `pose_nms` routes to `pose_nms_fullbody`: Halpe-136 and COCO-WholeBody-133.
FULLBODY_NUM_KEYPOINTS = (133, 136)
# Both full-body sets end with 68 face and 42 hand keypoints (the split of AlphaPose's `get_parametric_distance`).
_FACE_AND_HANDS = 110
_HANDS = 42

# AlphaPose's `pose_nms_body`: a score of exactly 0 becomes 1e-5 (so that it still counts as a tiny weight in the
# merge).
_ZERO_SCORE_FILL = 1e-5


@dataclass(frozen=True, kw_only=True)
class PoseNMSParams:
    """Every constant of pose NMS, with AlphaPose's body-path values as defaults (``pPose_nms.py`` module globals).

    Symbols follow the RMPE paper and AlphaPose's variable names so the code can be read against them.
    """

    # "parametric" (`pose_nms`), "oks" (`oks_pose_nms`), "soft_oks", or "crowd_association" (the pipeline stage
    # runs models.crowdpose.crowd_association instead of NMS; pose_nms() refuses it, see STAGE_METHODS)
    method: NmsMethod = "parametric"
    delta1: float = 1.0  # δ1 (`delta1`): temperature of the tanh score similarity
    mu: float = 1.7  # μ (`mu`): weight of the spatial term of the parametric distance
    delta2: float = 2.65  # δ2 (`delta2`): distance scale of the spatial term, pixels
    gamma: float = 22.48  # γ (`gamma`): eliminate i when its parametric similarity to the reference is > γ
    score_threshold: float = 0.3  # scoreThreds (output filters): drop poses whose max keypoint score is < this
    match_threshold: float = 5.0  # matchThreds: eliminate i when its PCK match count is >= this
    alpha: float = 0.1  # α (`alpha`): ref_dist = α · max(box w, box h) of the reference's detector box
    area_threshold: float = 0.0  # areaThres (CLI --min_box_area): drop 1.5²·extent < this, px²
    score_mask_radius: float = 1.0  # the score term counts keypoints within this many pixels (`dist <= 1`)
    pck_radius_cap: float = 7.0  # PCK_match: match radius is min(ref_dist, this), pixels
    merge_radius_cap: float = 15.0  # p_merge_fast: merge radius is min(ref_dist, this), pixels
    vis_threshold: float = 0.2  # vis_thr (oks_pose_nms): OKS rescoring averages keypoint scores above this
    oks_threshold: float = 0.9  # oks_thr (oks_pose_nms): OKS-NMS suppresses OKS > this; soft-OKS decay scale
    soft_oks_max_dets: int = 20  # soft_oks_nms's max_dets: soft-OKS-NMS keeps at most this many poses
    face_factor: float = 1.9  # full body (get_parametric_distance): face distance scale factor
    hand_factor: float = 0.55  # full body (get_parametric_distance): hand distance scale factor
    hand_weight_score: float = 0.1  # full body: weight of the hands' score term
    face_weight_score: float = 1.0  # full body: weight of the face's score term
    hand_weight_dist: float = 1.5  # full body: weight of the hands' spatial term
    face_weight_dist: float = 1.0  # full body: weight of the face's spatial term

    def __post_init__(self) -> None:
        if self.method not in STAGE_METHODS:
            raise ValueError(f"PoseNMSParams.method={self.method!r}; choose one of {', '.join(STAGE_METHODS)}")
        positive = ("delta1", "delta2", "alpha", "face_factor", "hand_factor")
        non_negative = (
            "mu",
            "gamma",
            "score_threshold",
            "match_threshold",
            "area_threshold",
            "score_mask_radius",
            "pck_radius_cap",
            "merge_radius_cap",
            "hand_weight_score",
            "face_weight_score",
            "hand_weight_dist",
            "face_weight_dist",
        )
        for name in positive + non_negative + ("vis_threshold", "oks_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"PoseNMSParams.{name} must be a number, got {type(value).__name__} {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"PoseNMSParams.{name}={value!r} must be finite")
            # Frozen dataclass: normalise ints from YAML/CLI to float once, at construction.
            object.__setattr__(self, name, float(value))
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"PoseNMSParams.{name}={getattr(self, name)!r} must be > 0")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"PoseNMSParams.{name}={getattr(self, name)!r} must be >= 0")
        if not 0.0 <= self.vis_threshold <= 1.0:
            raise ValueError(f"PoseNMSParams.vis_threshold={self.vis_threshold!r} must be in [0, 1]")
        if not 0.0 < self.oks_threshold <= 1.0:
            raise ValueError(f"PoseNMSParams.oks_threshold={self.oks_threshold!r} must be in (0, 1]")
        if (
            isinstance(self.soft_oks_max_dets, bool)
            or not isinstance(self.soft_oks_max_dets, int)
            or self.soft_oks_max_dets < 1
        ):
            raise ValueError(f"PoseNMSParams.soft_oks_max_dets={self.soft_oks_max_dets!r} must be an int >= 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` (str/float/int), e.g. for YAML."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PoseNMSParams:
        """Build from a mapping (e.g. loaded YAML); unknown keys are rejected with the list of valid ones."""
        if not isinstance(values, Mapping):
            raise TypeError(f"PoseNMSParams.from_dict expects a mapping, got {type(values).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown PoseNMSParams field(s) {', '.join(map(repr, unknown))}; valid fields: {', '.join(valid)}"
            )
        return cls(**dict(values))


BODY_PARAMS = PoseNMSParams()
"""AlphaPose's module constants (``pPose_nms.py``): every heatmap model, and the body path of every model."""

WHOLEBODY_REGRESSION_PARAMS = PoseNMSParams(
    delta1=1.0,
    mu=1.65,
    delta2=8.0,
    gamma=3.6,
    score_threshold=0.01,
    match_threshold=3.0,
    alpha=0.15,
)
"""The constants AlphaPose switches to for 133/136-keypoint models with a regression or "Combined" loss.

Deviation from AlphaPose (``pose_nms``, its ``global`` statement): AlphaPose overwrites its module globals with these
values for the rest of the process, so later body models run with them too; here they are a separate value the caller
passes.
"""


@dataclass(frozen=True)
class PoseNMSResult:
    """The poses that survive pose NMS, in pick order (M of them).

    Attributes:
        kept: int64 ``[M]``, input index of each surviving pose's reference (pick), in pick order.
        keypoints: float ``[M, K, 2]``, merged (x, y) in source-image pixels (input dtype if floating).
        keypoint_scores: float ``[M, K]``, merged keypoint scores.
        pose_scores: float ``[M]``, AlphaPose's person score ``mean(c) + box_score + 1.25·max(c)`` of the merged
            scores (parametric), or the OKS-NMS ranking score (``oks``/``soft_oks``).
        boxes_xyxy: ``[M, 4]``, the pick's detector box (not recomputed from the keypoints, as AlphaPose).
        box_scores: ``[M]``, the pick's detector score.
        merged_indices: M int64 arrays, the input indices merged into each pose (ascending; contains the pick).
    Arrays are NumPy or torch (on the input's device), as the input was.
    """

    kept: Any
    keypoints: Any
    keypoint_scores: Any
    pose_scores: Any
    boxes_xyxy: Any
    box_scores: Any
    merged_indices: tuple = ()

    def __len__(self) -> int:
        return int(self.kept.shape[0])


# --------------------------------------------------------------------------------------------------------------
# Input handling (NumPy or torch, validated, never modified)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """Validated inputs as float arrays of one backend (``xp`` is ``numpy`` or ``torch``)."""

    xp: Any
    device: Any
    boxes: Any  # float [N, 4], compute dtype
    box_scores: Any  # float [N]
    keypoints: Any  # float [N, K, 2]
    scores: Any  # float [N, K], zeros already replaced by 1e-5 (a new array)
    raw_boxes: Any  # the caller's boxes, for emitting exact copies of the pick's box
    raw_box_scores: Any
    out_dtype: Any  # dtype of emitted keypoints and scores


def _is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor. This module never imports torch: an input can only be a tensor once torch is
    imported, and Ray's CPU-task workers, which run pose NMS on NumPy arrays, stay without it (importing torch takes
    1.8–1.9 s per process on a 2-core machine)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _prepare(boxes_xyxy, box_scores, keypoints, keypoint_scores) -> _Inputs:
    args = (boxes_xyxy, box_scores, keypoints, keypoint_scores)
    if any(_is_tensor(a) for a in args):
        torch = sys.modules["torch"]
        ref = next(a for a in (keypoints, keypoint_scores, boxes_xyxy, box_scores) if _is_tensor(a))
        device = ref.device
        # MPS has no float64; everywhere else float64 keeps distances and sums far from any decision threshold.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        raw = [torch.as_tensor(a, device=device) for a in args]
        out_dtype = raw[2].dtype if raw[2].is_floating_point() else torch.get_default_dtype()
        conv = [a.to(dtype) for a in raw]
        xp = torch
    else:
        device = None
        raw = [np.asarray(a) for a in args]
        out_dtype = raw[2].dtype if np.issubdtype(raw[2].dtype, np.floating) else np.dtype(np.float64)
        conv = [np.asarray(a, dtype=np.float64) for a in raw]
        xp = np
    boxes, bscores, kps, scores = conv
    if kps.ndim != 3 or kps.shape[2] != 2:
        raise ValueError(f"keypoints must be [N, K, 2] (x, y), got shape {tuple(kps.shape)}")
    n, k = kps.shape[0], kps.shape[1]
    if k < 1:
        raise ValueError("keypoints must have at least one keypoint per pose (K >= 1)")
    for name, arr, shape in (
        ("boxes_xyxy", boxes, (n, 4)),
        ("box_scores", bscores, (n,)),
        ("keypoint_scores", scores, (n, k)),
    ):
        if tuple(arr.shape) != shape:
            raise ValueError(
                f"{name} must have shape {shape} for keypoints of shape {tuple(kps.shape)}, got {tuple(arr.shape)}"
            )
    if n:
        bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        checks = [xp.isfinite(a).all() for a in conv] + [~bad.any()]
        # One device → host transfer for all checks (each bool() on a CUDA tensor would synchronise).
        ok = _to_numpy(xp.stack(checks)) if xp is not np else np.array(checks)
        for name, good in zip(("boxes_xyxy", "box_scores", "keypoints", "keypoint_scores"), ok):
            if not good:
                raise ValueError(f"{name} contains NaN or infinite values; pose NMS needs finite inputs")
        if not ok[4]:
            i = int(xp.nonzero(bad)[0][0])
            raise ValueError(
                f"boxes_xyxy[{i}] = {boxes[i].tolist()} is not (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2"
            )
    # Deviation from AlphaPose (`pose_nms_body`): AlphaPose writes the 1e-5 into the caller's tensor;
    # ``where`` builds a new array, so the caller's (possibly read-only, zero-copy) batch is never touched.
    scores = xp.where(scores == 0, _ZERO_SCORE_FILL, scores)
    return _Inputs(
        xp=xp,
        device=device,
        boxes=boxes,
        box_scores=bscores,
        keypoints=kps,
        scores=scores,
        raw_boxes=raw[0],
        raw_box_scores=raw[1],
        out_dtype=out_dtype,
    )


def _unit_scores(keypoints):
    """Ones of shape [N, K] for ``keypoints`` [N, K, 2] (same backend and device), for the functions without scores."""
    if _is_tensor(keypoints):
        return keypoints.new_ones(keypoints.shape[:2], dtype=sys.modules["torch"].float64)
    shape = np.shape(keypoints)
    if len(shape) != 3:
        raise ValueError(f"keypoints must be [N, K, 2] (x, y), got shape {shape}")
    return np.ones(shape[:2])


def _amax(x, dim: int):
    return x.amax(dim) if _is_tensor(x) else x.max(dim)


def _amin(x, dim: int):
    return x.amin(dim) if _is_tensor(x) else x.min(dim)


def _cap(x, value: float):
    """Elementwise ``min(x, value)`` for either backend."""
    return x.clamp(max=value) if _is_tensor(x) else np.minimum(x, value)


def _contiguous(x):
    return x.contiguous() if _is_tensor(x) else np.ascontiguousarray(x)


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if _is_tensor(x) else np.asarray(x)


def _index(inp: _Inputs, idx) -> Any:
    """int64 index array of the input's backend (and device)."""
    arr = np.asarray(idx, dtype=np.int64)
    return inp.xp.as_tensor(arr, device=inp.device) if inp.xp is not np else arr


def _empty_result(inp: _Inputs, k: int) -> PoseNMSResult:
    xp = inp.xp
    if xp is not np:
        kw = {"device": inp.device}
        return PoseNMSResult(
            kept=xp.zeros(0, dtype=xp.int64, **kw),
            keypoints=xp.zeros((0, k, 2), dtype=inp.out_dtype, **kw),
            keypoint_scores=xp.zeros((0, k), dtype=inp.out_dtype, **kw),
            pose_scores=xp.zeros(0, dtype=inp.out_dtype, **kw),
            boxes_xyxy=inp.raw_boxes[:0].clone(),
            box_scores=inp.raw_box_scores[:0].clone(),
            merged_indices=(),
        )
    return PoseNMSResult(
        kept=np.zeros(0, np.int64),
        keypoints=np.zeros((0, k, 2), inp.out_dtype),
        keypoint_scores=np.zeros((0, k), inp.out_dtype),
        pose_scores=np.zeros(0, inp.out_dtype),
        boxes_xyxy=inp.raw_boxes[:0].copy(),
        box_scores=inp.raw_box_scores[:0].copy(),
        merged_indices=(),
    )


def _cast(inp: _Inputs, x):
    return x.to(inp.out_dtype) if inp.xp is not np else x.astype(inp.out_dtype)


def _take(inp: _Inputs, x, idx):
    """Rows ``idx`` of ``x``; integer-array indexing copies, so the result never aliases the caller's data."""
    return x[_index(inp, idx)]


# --------------------------------------------------------------------------------------------------------------
# Parametric pose NMS (AlphaPose's pose_nms_body / pose_nms_fullbody)
# --------------------------------------------------------------------------------------------------------------

# Relative slack on the pair prefilter's bounds: far above the float64 rounding of a distance or a K-term sum
# (~1e-15), far below any distance or similarity that matters.
_MARGIN = 1e-9
# Below this many poses all N×N pairs are evaluated by broadcasting: the prefilter's dozen N×N operations and the
# pair gathers cost more than they save (measured on the benchmark frames).
_PREFILTER_MIN_POSES = 16
# Pairs evaluated per step: [K, pairs] temporaries of ~2^16 float64 (512 KiB) stay in cache, and a frame with
# thousands of proposals runs in bounded memory.
_CHUNK_ELEMENTS = 1 << 16


def _parts(k: int, params: PoseNMSParams) -> tuple[tuple[slice, float, float, float], ...]:
    """(keypoints, score weight, distance weight, distance-scale factor) of each part (AlphaPose's
    full-body ``get_parametric_distance``)."""
    if k not in FULLBODY_NUM_KEYPOINTS:
        return ((slice(0, k), 1.0, 1.0, 1.0),)
    body, face_end = k - _FACE_AND_HANDS, k - _HANDS
    return (
        (slice(0, body), 1.0, 1.0, 1.0),
        (slice(body, face_end), params.face_weight_score, params.face_weight_dist, params.face_factor),
        (slice(face_end, k), params.hand_weight_score, params.hand_weight_dist, params.hand_factor),
    )


@functools.lru_cache(maxsize=64)  # a pure function of (K, frozen params); called once per frame
def _spatial_reach(k: int, params: PoseNMSParams) -> float:
    """A distance g such that, when every keypoint distance of a pair is > g, its spatial term cannot exceed γ.

    Body: μ·Σ_j exp(−d_j/δ2) <= μ·K·exp(−g/δ2); full body: μ·Σ_parts w·mean exp(−d/(δ2·f))
    <= μ·Σ_parts w·exp(−g/(δ2·f)). The bound is decreasing in g; bisection finds where it (with a 1e-9 relative
    margin for rounding) drops to γ. ``inf`` when γ = 0 and the bound never reaches it.
    """
    parts = _parts(k, params)
    if k in FULLBODY_NUM_KEYPOINTS:

        def bound(g: float) -> float:
            return params.mu * sum(w_dist * math.exp(-g / (params.delta2 * f)) for _, _, w_dist, f in parts)
    else:

        def bound(g: float) -> float:
            return params.mu * k * math.exp(-g / params.delta2)

    if bound(0.0) * (1.0 + _MARGIN) <= params.gamma:
        return 0.0
    if params.gamma <= 0:
        return math.inf
    lo, hi = 0.0, params.delta2
    while bound(hi) * (1.0 + _MARGIN) > params.gamma:
        lo, hi = hi, 2.0 * hi
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        if bound(mid) * (1.0 + _MARGIN) > params.gamma:
            lo = mid
        else:
            hi = mid
    return hi


def _candidate_pairs(inp: _Inputs, pre: dict, params: PoseNMSParams) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (p < i) that might eliminate one another; every other pair provably cannot.

    The gap between two poses' keypoint bounding boxes is a lower bound on all K keypoint distances of the pair,
    computed for all N×N pairs at once. A pair is decided "no elimination, either way" without its K distances
    when the gap exceeds the score-mask radius (score term 0), both match radii (match counts 0) and the spatial
    reach (``_spatial_reach``). The bounds carry a 1e-9 relative margin, so this changes no decision; it spares
    the distances of far-apart people, which are most pairs of a real frame.

    Returns:
        int64 ``[M]`` arrays ``p`` and ``i`` (``p < i``), in row-major order.
    """
    xp = inp.xp
    k = inp.scores.shape[1]
    gx, gy = _interval_gaps(xp, pre["xt"]), _interval_gaps(xp, pre["yt"])
    gap = xp.sqrt(gx * gx + gy * gy) * (1.0 - _MARGIN)  # [N, N]
    r7 = pre["r7"]
    max_factor = max(f for *_, f in _parts(k, params))
    fixed_reach = max(params.score_mask_radius, _spatial_reach(k, params))
    maybe = (gap <= xp.maximum(r7[:, None], r7[None, :]) * max_factor) | (gap <= fixed_reach)
    return np.nonzero(np.triu(_to_numpy(maybe), 1))


def _interval_gaps(xp, coords_t):
    """``[N, N]`` gaps between the poses' coordinate ranges (0 where they overlap), from ``[K, N]`` coordinates."""
    lo, hi = _amin(coords_t, 0), _amax(coords_t, 0)
    return _clamp0(xp.maximum(lo[None, :] - hi[:, None], lo[:, None] - hi[None, :]))


def _clamp0(x):
    return x.clamp(min=0.0) if _is_tensor(x) else np.maximum(x, 0.0)


def _clamp_min(x, value: float):
    return x.clamp(min=value) if _is_tensor(x) else np.maximum(x, value)


def _distances(xp, xt, yt, p, i):
    """``d[j, ...] = ||k_p^j − k_i^j||`` for index arrays p, i of one broadcast shape S: float ``[K, *S]``.

    S is ``[M]`` for a list of pairs, or ``[N, N]`` (p ``[N, 1]``, i ``[1, N]``) for every pair at once.
    Keypoint-first layout: every sum over keypoints adds contiguous rows, in keypoint order, like a per-keypoint
    loop. ``sqrt(dx² + dy²)`` is AlphaPose's formula (and its bits do not depend on the pair's order).
    """
    dx = xt[:, p] - xt[:, i]
    dy = yt[:, p] - yt[:, i]
    return xp.sqrt(dx * dx + dy * dy)


def _body_terms(inp: _Inputs, pre: dict, p, i, params: PoseNMSParams, both: bool = True) -> list:
    """Body path (``get_parametric_distance``, ``PCK_match``): parametric similarity and PCK match count of i to
    reference p (and, with ``both``, of p to reference i).

    ``p`` and ``i`` are index arrays of one broadcast shape S (see ``_distances``); returns a list of one or two
    ``(simi, pck)`` pairs of float/int arrays of shape S.
    """
    xp = inp.xp
    d = _distances(xp, pre["xt"], pre["yt"], p, i)
    tanh_c = pre["tanh_c"]
    # Score term: only keypoints within 1 px of the reference's count (get_parametric_distance's `mask = dist <= 1`).
    score_term = ((d <= params.score_mask_radius) * (tanh_c[:, p] * tanh_c[:, i])).sum(0)
    # exp(-d/δ2) written as d/(-δ2): bit-identical to AlphaPose's exp(-1·dist/δ2), one operation fewer.
    spatial = xp.exp(d / -params.delta2).sum(0)
    # simi is symmetric in the pair (tanh_p·tanh_i, and d does not depend on the order): one value, both ways.
    simi = score_term + params.mu * spatial
    r7 = pre["r7"]
    out = []
    for ref in (p, i) if both else (p,):
        # PCK (PCK_match): AlphaPose counts d / min(r, 7) <= 1. For r > 0 that is exactly d <= r (IEEE division
        # is correctly rounded and monotone); for r = 0 it is 0/0 = NaN or d/0 = inf, so nothing matches.
        ref_r7 = r7[ref]
        out.append((simi, xp.where(ref_r7 > 0, (d <= ref_r7).sum(0), 0)))
    return out


def _fullbody_terms(inp: _Inputs, pre: dict, p, i, params: PoseNMSParams, both: bool = True) -> list:
    """Full-body path for 133/136 keypoints (``pose_nms_fullbody``), as intended; arguments and result as
    ``_body_terms``.

    Deviation from AlphaPose (``get_parametric_distance`` with ``use_dist_mask=True``): AlphaPose's mask keeps the
    keypoints whose candidate score is *below* scoreThreds in the score term and zeroes the spatial term for exactly
    those, so low-confidence keypoints drive the similarity. Here the mask keeps the *confident* keypoints
    (c_i >= score_threshold) in both terms, which is what the paper's score-aware similarity asks for.
    Deviation from AlphaPose (``PCK_match_fullbody``): AlphaPose divides the match count by 4·n·m with n the number
    of proposals not yet processed, so whether two identical poses merge depends on how many other people are in the
    frame (an exact 136-keypoint copy scores 17 for n=2, 6.8 for n=5). Here n is fixed at 2, i.e.
    pck = count·K / (8·m): AlphaPose's value when two proposals remain, now independent of the rest of the frame
    (which also keeps a pair's decision a function of the pair, as the vectorised loop needs).
    Deviation from AlphaPose (``PCK_match_fullbody``): AlphaPose's match count slices body/face/hands at 26/94, right
    for Halpe-136 only; here the slices come from K (body = K−110 keypoints), as AlphaPose's distance already does, so
    COCO-WholeBody-133 uses 23/91.
    """
    xp = inp.xp
    k = inp.scores.shape[1]
    d = _distances(xp, pre["xt"], pre["yt"], p, i)
    tanh_c = pre["tanh_c"]
    factor = pre["factor"].reshape((k,) + (1,) * (d.ndim - 1))  # per keypoint, broadcast over the pairs
    near_score = (d <= params.score_mask_radius) * (tanh_c[:, p] * tanh_c[:, i])
    spatial = xp.exp(d / (-params.delta2 * factor))
    r7, r7_safe, m, confident = pre["r7"], pre["r7_safe"], pre["m"], pre["confident"]
    out = []
    for ref, cand in ((p, i), (i, p)) if both else ((p, i),):
        conf = confident[:, cand]  # the candidate's confident keypoints
        s, e = near_score * conf, spatial * conf
        simi = 0.0
        spatial_sum = 0.0
        for sl, w_score, w_dist, _ in _parts(k, params):
            size = sl.stop - sl.start
            simi = simi + w_score * (s[sl].sum(0) / size)
            spatial_sum = spatial_sum + w_dist * (e[sl].sum(0) / size)
        simi = simi + params.mu * spatial_sum
        # AlphaPose: d / r7 <= factor per part; with r7 = 0 nothing matches (as in the body path).
        count = ((d / r7_safe[ref]) <= factor).sum(0)
        m_ref = m[ref]
        pck = xp.where((r7[ref] > 0) & (m_ref > 0), count * (k / 8.0) / _clamp_min(m_ref, 1), 0.0)
        out.append((simi, pck))
    return out


def _precompute(inp: _Inputs, ref, params: PoseNMSParams) -> tuple[dict, Any]:
    """Per-pose arrays the pair terms read, and the pair-terms function of this K (body or full body)."""
    xp = inp.xp
    k = inp.scores.shape[1]
    r7 = _cap(ref, params.pck_radius_cap)
    pre = {
        "xt": _contiguous(inp.keypoints[:, :, 0].T),  # [K, N]
        "yt": _contiguous(inp.keypoints[:, :, 1].T),
        "tanh_c": _contiguous(xp.tanh(inp.scores.T / params.delta1)),  # [K, N]
        "r7": r7,
    }
    if k in FULLBODY_NUM_KEYPOINTS:
        factor = np.ones(k)
        for sl, _, _, f in _parts(k, params):
            factor[sl] = f
        pre.update(
            factor=xp.as_tensor(factor, device=inp.device, dtype=inp.scores.dtype) if xp is not np else factor,
            r7_safe=xp.where(r7 > 0, r7, 1.0),
            m=(inp.scores > params.score_threshold / 2).sum(1),  # the reference's confident keypoints (m)
            confident=_contiguous((inp.scores >= params.score_threshold).T),  # [K, N]
        )
        return pre, _fullbody_terms
    return pre, _body_terms


def _eliminates(terms: tuple, params: PoseNMSParams):
    """AlphaPose's elimination rule (``pose_nms_body``): ``simi > γ`` (strict) or ``pck >= matchThreds``."""
    simi, pck = terms
    return (simi > params.gamma) | (pck >= params.match_threshold)


def _delete_matrix(inp: _Inputs, ref, params: PoseNMSParams) -> np.ndarray:
    """bool ``[N, N]``: ``D[p, i]`` is True when reference p eliminates candidate i (as AlphaPose's
    ``pose_nms_body`` / ``pose_nms_fullbody`` decide it).

    The diagonal does not matter: the pick loop removes a pick with its cluster regardless (``_greedy_picks``).
    """
    n, k = inp.scores.shape
    pre, terms = _precompute(inp, ref, params)
    if n < _PREFILTER_MIN_POSES:
        # Every pair at once, [K, N, N] by broadcasting [N, 1] against [1, N] indices.
        every = _index(inp, np.arange(n))
        return _to_numpy(_eliminates(terms(inp, pre, every[:, None], every[None, :], params, both=False)[0], params))
    pairs_p, pairs_i = _candidate_pairs(inp, pre, params)
    delete = np.zeros((n, n), dtype=bool)
    step = max(1, _CHUNK_ELEMENTS // k)
    for start in range(0, pairs_p.size, step):
        p_np, i_np = pairs_p[start : start + step], pairs_i[start : start + step]
        forward, backward = terms(inp, pre, _index(inp, p_np), _index(inp, i_np), params)
        delete[p_np, i_np] = _to_numpy(_eliminates(forward, params))
        delete[i_np, p_np] = _to_numpy(_eliminates(backward, params))
    return delete


def pairwise_pose_similarity(boxes_xyxy, keypoints, keypoint_scores, params: PoseNMSParams = BODY_PARAMS):
    """The two quantities pose NMS thresholds, for every (reference, candidate) pair: for inspection and tests.

    Args:
        boxes_xyxy, keypoints, keypoint_scores: as ``pose_nms`` (the box sets the reference's match radius).
        params: constants (``method`` is ignored).
    Returns:
        ``(simi, pck)``, float64 ``[N, N]`` each (NumPy or torch, as given): ``simi[p, i]`` is the parametric
        similarity of candidate i to reference p (``get_parametric_distance``; full body for K = 133/136),
        ``pck[p, i]`` its match count. Pose NMS lets p eliminate i when ``simi > gamma`` or
        ``pck >= match_threshold``. Computed over all pairs at once (no prefilter), with zero scores replaced by 1e-5
        as pose NMS does.
    """
    inp = _prepare(boxes_xyxy, _unit_scores(keypoints)[:, 0], keypoints, keypoint_scores)
    n = inp.scores.shape[0]
    b = inp.boxes
    ref = params.alpha * inp.xp.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    pre, terms = _precompute(inp, ref, params)
    every = _index(inp, np.arange(n))
    simi, pck = terms(inp, pre, every[:, None], every[None, :], params, both=False)[0]
    return simi * 1.0, pck * 1.0  # pck as float, like simi


def _greedy_picks(delete: np.ndarray, human_scores: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The sequential elimination loop of AlphaPose's ``pose_nms_body`` (``while mask.any()``), on index sets only.

    Args:
        delete: bool ``[N, N]``, ``delete[p, i]``: reference p eliminates candidate i.
        human_scores: float ``[N]``, mean keypoint score h_i.
    Returns:
        ``picks`` (input indices, in pick order) and ``cluster`` int64 ``[N]``: for each input, the position in
        ``picks`` of the reference it was merged into.

    The pick is the remaining pose of highest h (ties: lowest index, as AlphaPose's argmax over R kept in input
    order). A stable descending sort gives that order once; since R only shrinks, the next pick is the next
    still-remaining entry of that order. R and the rows of ``delete`` are Python ints used as bit sets.

    Deviation from AlphaPose (``pose_nms_body``): AlphaPose deletes p itself only when nothing else was deleted.
    If others were deleted but p does not eliminate itself (r = 0 and simi_pp <= γ, impossible with AlphaPose's
    constants for K >= 14 because simi_pp >= μ·K > γ), AlphaPose would pick p again and emit it twice. Here p
    always leaves R with its cluster, which is the same whenever AlphaPose's own behaviour is sane.
    """
    n = delete.shape[0]
    order = np.argsort(-human_scores, kind="stable").tolist()
    packed = np.packbits(delete, axis=1, bitorder="little")
    rows = [int.from_bytes(r.tobytes(), "little") for r in packed]
    remaining = (1 << n) - 1
    picks: list[int] = []
    pos = 0
    while remaining:
        while not (remaining >> order[pos]) & 1:
            pos += 1
        p = order[pos]
        remaining &= ~(rows[p] | (1 << p))
        picks.append(p)
    # Candidate i joined the first pick (in pick order) that eliminates it: it was still in R then, and nothing
    # earlier eliminated it, or it would have left R earlier.
    joined = delete[picks]
    joined[np.arange(len(picks)), picks] = True
    return picks, joined.argmax(axis=0)


def _cluster_table(cluster: np.ndarray, num_picks: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``[P, S]`` member table (ascending input index per row, padded with N) and the sizes ``[P]``."""
    n = cluster.shape[0]
    order = np.argsort(cluster, kind="stable")
    sizes = np.bincount(cluster, minlength=num_picks)
    starts = np.cumsum(sizes) - sizes
    table = np.full((num_picks, int(sizes.max())), n, dtype=np.int64)
    table[cluster[order], np.arange(n) - starts[cluster[order]]] = order
    return table, sizes


def _merge(inp: _Inputs, ref, picks: list[int], cluster: np.ndarray, table: np.ndarray, params: PoseNMSParams):
    """Merge every cluster into its pick (AlphaPose's ``p_merge_fast``).

    Returns merged keypoints [P, K, 2] and scores [P, K].
    """
    xp = inp.xp
    kps, c = inp.keypoints, inp.scores
    pick_of = _index(inp, np.asarray(picks)[cluster])  # [N], input index of each candidate's reference
    dx = kps[pick_of, :, 0] - kps[:, :, 0]
    dy = kps[pick_of, :, 1] - kps[:, :, 1]
    dist = xp.sqrt(dx * dx + dy * dy)  # [N, K], the formula (and bits) of the elimination distance
    radius = _cap(ref[pick_of], params.merge_radius_cap)
    w = c * (dist <= radius[:, None])  # [N, K]; the pick itself always has distance 0 <= radius
    # Per-cluster sums by gathering each cluster's members (padding row N is zeros): sums run over members in
    # ascending input order, and a NaN of one cluster (zero total weight from negative scores) stays in it.
    rows = _index(inp, table)
    zero = xp.zeros_like(w[:1])
    total = _concat(xp, w, zero)[rows].sum(1)  # [P, K], W^j
    normed = w / total[_index(inp, cluster)]  # [N, K], w_i^j / W^j, as AlphaPose normalises before summing
    stacked = xp.stack([normed * kps[:, :, 0], normed * kps[:, :, 1], normed * w], -1)  # [N, K, 3]
    sums = _concat(xp, stacked, xp.zeros_like(stacked[:1]))[rows].sum(1)  # [P, K, 3]
    return sums[..., :2], sums[..., 2]


def _concat(xp, a, b):
    return xp.cat([a, b]) if xp is not np else np.concatenate([a, b])


def parametric_pose_nms(
    boxes_xyxy, box_scores, keypoints, keypoint_scores, params: PoseNMSParams = BODY_PARAMS
) -> PoseNMSResult:
    """AlphaPose's parametric pose NMS (``pose_nms_body`` / ``pose_nms_fullbody``), whatever ``params.method`` says.

    Same arguments and result as ``pose_nms``. K = 133 or 136 takes the full-body path (``pose_nms_fullbody``, with
    the deviations documented in ``_fullbody_terms``); every other K takes the body path.
    """
    inp = _prepare(boxes_xyxy, box_scores, keypoints, keypoint_scores)
    xp = inp.xp
    n, k = inp.scores.shape
    if n == 0:
        return _empty_result(inp, k)
    b = inp.boxes
    ref = params.alpha * xp.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])  # detector box, not crop box, as AlphaPose
    delete = _delete_matrix(inp, ref, params)
    # h_i = mean keypoint score (AlphaPose's human_scores), summed keypoint by keypoint in order: the same value on
    # every backend.
    human = _to_numpy(_contiguous(inp.scores.T).sum(0) / k)
    picks, cluster = _greedy_picks(delete, human)
    table, sizes = _cluster_table(cluster, len(picks))

    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 only from negative scores: NaN, as AlphaPose
        merged_kps, merged_c = _merge(inp, ref, picks, cluster, table, params)
    picks_idx = _index(inp, picks)
    thr = params.score_threshold
    # Output filters (those of pose_nms_body), written as "drop if x < thr" so that a NaN (zero total weight from
    # negative scores) is kept exactly when AlphaPose keeps it.
    pre_max = _amax(inp.scores[picks_idx], 1)
    post_max = _amax(merged_c, 1)
    extent = _amax(merged_kps, 1) - _amin(merged_kps, 1)  # [P, 2]
    area = 1.5**2 * extent[:, 0] * extent[:, 1]
    keep = ~(pre_max < thr) & ~(post_max < thr) & ~(area < params.area_threshold)
    keep_pos = np.flatnonzero(_to_numpy(keep))
    kept = np.asarray(picks, dtype=np.int64)[keep_pos]

    keep_idx, kept_idx, members = _index(inp, keep_pos), _index(inp, kept), _index(inp, table)
    c_out = merged_c[keep_idx]
    if xp is not np:
        from models.heatmaps import person_scores

        scores_out = person_scores(c_out, inp.box_scores[kept_idx])
    else:  # models.heatmaps.person_scores' formula, without a round trip through torch
        scores_out = c_out.mean(1) + inp.box_scores[kept] + 1.25 * c_out.max(1)
    return PoseNMSResult(
        kept=kept_idx,
        keypoints=_cast(inp, merged_kps[keep_idx]),
        keypoint_scores=_cast(inp, c_out),
        pose_scores=_cast(inp, scores_out),
        boxes_xyxy=_take(inp, inp.raw_boxes, kept),
        box_scores=_take(inp, inp.raw_box_scores, kept),
        merged_indices=tuple(members[t, : sizes[t]] for t in keep_pos.tolist()),  # views of one new array
    )


# --------------------------------------------------------------------------------------------------------------
# OKS-NMS and soft-OKS-NMS (AlphaPose's oks_pose_nms, oks_nms, soft_oks_nms)
# --------------------------------------------------------------------------------------------------------------


def _sigmas_for(k: int, sigmas: Sequence[float] | None, inp: _Inputs):
    if sigmas is None and k in (133, 136):
        # AlphaPose's oks_iou (pPose_nms.py L161-179) picks these by vector length, not the evaluator's values
        # that the keypoint sets carry (halpecocotools): 0.025 for Halpe-136's face and hands, the official
        # COCO-WholeBody sigmas for 133.
        sig = np.asarray(HALPE136_OKS_IOU_SIGMAS if k == 136 else COCO_WHOLEBODY133_OFFICIAL_SIGMAS, np.float64)
    elif sigmas is None:
        try:
            sig = keypoint_set_for_num_joints(k).sigmas_array()
        except ValueError as e:
            raise ValueError(f"OKS needs per-keypoint sigmas: {e}; pass sigmas= explicitly") from None
    else:
        sig = np.asarray(sigmas, dtype=np.float64)
        if sig.shape != (k,):
            raise ValueError(f"sigmas must have shape ({k},) for {k} keypoints, got {sig.shape}")
    return inp.xp.as_tensor(sig, device=inp.device, dtype=inp.scores.dtype) if inp.xp is not np else sig


def _oks(inp: _Inputs, sigmas) -> Any:
    """OKS of every pair (AlphaPose's ``oks_iou``): ``mean_j exp(−d²/(2σ)²/((a_p + a_i)/2 + eps)/2)``, [N, N].

    The area of a pose is its detector box area (AlphaPose's ``oks_nms`` takes each record's ``area`` field, which
    its caller fills).
    """
    xp = inp.xp
    b = inp.boxes
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    variances = (2.0 * sigmas) ** 2
    xt, yt = inp.keypoints[:, :, 0].T, inp.keypoints[:, :, 1].T
    d2 = (xt[:, :, None] - xt[:, None, :]) ** 2 + (yt[:, :, None] - yt[:, None, :]) ** 2
    mean_area = (area[:, None] + area[None, :]) / 2 + np.spacing(1.0)
    e = d2 / variances[:, None, None] / mean_area[None] / 2
    return xp.exp(-e).sum(0) / d2.shape[0]


def _rescore(inp: _Inputs, params: PoseNMSParams):
    """box score × mean of the keypoint scores above vis_thr (0 when none are), as AlphaPose's ``oks_pose_nms``."""
    c = inp.scores
    above = c > params.vis_threshold
    count = above.sum(1)
    mean = (c * above).sum(1) / inp.xp.where(count > 0, count, 1)
    return inp.box_scores * mean


def _unmerged_result(inp: _Inputs, kept: list[int], scores: np.ndarray) -> PoseNMSResult:
    idx = _index(inp, kept)
    kp_scores = inp.scores[idx]
    pose_scores = inp.xp.as_tensor(scores, device=inp.device) if inp.xp is not np else np.asarray(scores)
    return PoseNMSResult(
        kept=idx,
        keypoints=_cast(inp, inp.keypoints[idx]),
        keypoint_scores=_cast(inp, kp_scores),
        pose_scores=_cast(inp, pose_scores),
        boxes_xyxy=_take(inp, inp.raw_boxes, kept),
        box_scores=_take(inp, inp.raw_box_scores, kept),
        merged_indices=tuple(_index(inp, [i]) for i in kept),
    )


def oks_matrix(boxes_xyxy, keypoints, sigmas: Sequence[float] | None = None):
    """Object keypoint similarity of every pair of poses, float64 ``[N, N]`` (NumPy or torch, as given).

    Args:
        boxes_xyxy: ``[N, 4]`` detector boxes (their areas are the OKS scale), pixels.
        keypoints: ``[N, K, 2]`` (x, y) pixels.
        sigmas: ``[K]`` OKS sigmas; default by K from ``models.keypoints`` (17 COCO, 26 Halpe, 14 CrowdPose, 16).
    """
    ones = _unit_scores(keypoints)
    inp = _prepare(boxes_xyxy, ones[:, 0], keypoints, ones)
    return _oks(inp, _sigmas_for(inp.scores.shape[1], sigmas, inp))


def oks_nms(
    boxes_xyxy,
    box_scores,
    keypoints,
    keypoint_scores,
    params: PoseNMSParams = BODY_PARAMS,
    *,
    sigmas: Sequence[float] | None = None,
) -> PoseNMSResult:
    """Greedy OKS-NMS (AlphaPose's ``oks_pose_nms`` for ``validate.py --oks-nms``).

    Each pose is rescored as box score × mean of its keypoint scores above ``params.vis_threshold``; poses are
    visited by descending score (ties: lowest index) and each kept pose suppresses the remaining poses whose OKS
    with it is > ``params.oks_threshold``. Nothing is merged: the result carries the input keypoints and scores
    (zeros filled with 1e-5), ``pose_scores`` is the rescored value and each ``merged_indices`` entry is ``[i]``.
    Arguments as ``pose_nms``; ``sigmas`` as ``oks_matrix``.
    """
    inp = _prepare(boxes_xyxy, box_scores, keypoints, keypoint_scores)
    n, k = inp.scores.shape
    if n == 0:
        return _empty_result(inp, k)
    oks = _to_numpy(_oks(inp, _sigmas_for(k, sigmas, inp)))
    scores = _to_numpy(_rescore(inp, params))
    suppress = oks > params.oks_threshold
    alive = np.ones(n, dtype=bool)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable").tolist():
        if alive[i]:
            kept.append(i)
            alive &= ~suppress[i]
    return _unmerged_result(inp, kept, scores[kept])


def soft_oks_nms(
    boxes_xyxy,
    box_scores,
    keypoints,
    keypoint_scores,
    params: PoseNMSParams = BODY_PARAMS,
    *,
    sigmas: Sequence[float] | None = None,
) -> PoseNMSResult:
    """Soft-OKS-NMS (AlphaPose's ``soft_oks_nms``): Gaussian rescoring ``s·exp(−oks²/oks_threshold)``, at most
    ``soft_oks_max_dets``.

    Rescored as in ``oks_nms``; repeatedly keeps the highest-scoring remaining pose (ties: lowest index) and decays
    every remaining score by its OKS with the kept pose. ``pose_scores`` are the decayed scores at the time each
    pose was kept. Arguments and result as ``oks_nms``.
    """
    inp = _prepare(boxes_xyxy, box_scores, keypoints, keypoint_scores)
    n, k = inp.scores.shape
    if n == 0:
        return _empty_result(inp, k)
    oks = _to_numpy(_oks(inp, _sigmas_for(k, sigmas, inp)))
    scores = _to_numpy(_rescore(inp, params)).copy()
    remaining = np.arange(n)
    kept: list[int] = []
    kept_scores: list[float] = []
    while remaining.size and len(kept) < params.soft_oks_max_dets:
        best = int(np.argmax(scores[remaining]))  # first maximum: ties go to the lowest remaining index
        i = int(remaining[best])
        kept.append(i)
        kept_scores.append(float(scores[i]))
        remaining = np.delete(remaining, best)
        scores[remaining] = scores[remaining] * np.exp(-(oks[i, remaining] ** 2) / params.oks_threshold)
    return _unmerged_result(inp, kept, np.asarray(kept_scores))


def pose_nms(boxes_xyxy, box_scores, keypoints, keypoint_scores, params: PoseNMSParams = BODY_PARAMS) -> PoseNMSResult:
    """Pose NMS of one frame's poses: AlphaPose's parametric pose NMS by default (Fang et al., RMPE, ICCV 2017).

    Args:
        boxes_xyxy: ``[N, 4]`` detector boxes (x1, y1, x2, y2) with x1 <= x2, y1 <= y2, source-image pixels.
        box_scores: ``[N]`` detector scores (AlphaPose: YOLO objectness).
        keypoints: ``[N, K, 2]`` (x, y) source-image pixels.
        keypoint_scores: ``[N, K]`` keypoint scores (raw heatmap maxima).
        params: constants; ``params.method`` picks ``"parametric"`` (``parametric_pose_nms``), ``"oks"``
            (``oks_nms``) or ``"soft_oks"`` (``soft_oks_nms``).
        All four are NumPy arrays (or array-likes) or torch tensors (on any device), all finite; none is modified.
    Returns:
        ``PoseNMSResult`` of the M surviving poses in pick order, as NumPy arrays, or torch tensors on the input's
        device when any input is a tensor. Keypoints and scores keep the input keypoints' floating dtype (the
        computation runs in float64). N = 0 gives M = 0 with arrays of shapes [0], [0, K, 2], [0, K], [0, 4].

    Example (two detections of one person, merged into one pose; AlphaPose's ``pose_nms`` gives the same):

    >>> import numpy as np
    >>> kps = np.stack([np.linspace(100, 160, 17), np.linspace(50, 300, 17)], axis=1)
    >>> r = pose_nms(np.array([[90, 40, 170, 310], [92, 42, 168, 312.]]), np.array([0.95, 0.9]),
    ...              np.stack([kps, kps + 0.5]), np.array([[0.9] * 17, [0.7] * 17]))
    >>> r.kept.tolist(), [m.tolist() for m in r.merged_indices]
    ([0], [[0, 1]])
    >>> round(float(r.keypoint_scores[0, 0]), 6), round(float(r.pose_scores[0]), 6)
    (0.8125, 2.778125)
    """
    if params.method == "crowd_association":
        raise ValueError(
            "PoseNMSParams.method='crowd_association' replaces pose NMS with CrowdPose's joint association, which "
            "needs joint candidates: call models.crowdpose.crowd_association (the pipeline's actors.pose_nms does)"
        )
    if params.method == "oks":
        return oks_nms(boxes_xyxy, box_scores, keypoints, keypoint_scores, params)
    if params.method == "soft_oks":
        return soft_oks_nms(boxes_xyxy, box_scores, keypoints, keypoint_scores, params)
    return parametric_pose_nms(boxes_xyxy, box_scores, keypoints, keypoint_scores, params)
