"""CrowdPose (Li et al., "CrowdPose: Efficient Crowded Scenes Pose Estimation and A New Benchmark", CVPR 2019):
joint candidates from multi-peak heatmaps, global joint association (as released and as in the paper), the crowd
index, interference joints and the joint-candidate SPPE (JC-SPPE) training targets.

Facts come from the CrowdPose paper (Li et al., CVPR 2019) and were checked against AlphaPose's ``pytorch``
branch (the code behind ``--matching``): ``SPPE/src/utils/img.py`` ``findPeak`` / ``processPeaks``,
``SPPE/src/utils/eval.py`` ``getMultiPeakPrediction`` and ``matching.py`` ``candidate_reselect`` / ``grouping`` /
``matching``. No code is copied; the algorithm is rewritten vectorised over persons and joints.

Stages and where they sit in a top-down pipeline (detector → SPPE → *this* instead of pose NMS):

* ``joint_candidates``: every heatmap gives a short list of candidates (image pixels, score), best first (§2.3).
  ``joint_candidates_torch`` gives the same on the heatmaps' torch device (the SPPE's GPU path: only the
  candidates reach the host).
* ``released_association``: AlphaPose's ``candidate_reselect``: greedy grouping of each person's current candidate
  into joint groups, one Hungarian matching per joint type on person-score × joint-score costs, fall back to the
  next candidate when a person loses its group, then the output filter (§2.4 "Released code").
* ``paper_association``: the paper's formulation: joint nodes from *all* candidates, K maximum-weight bipartite
  matchings between persons and joint nodes with the person confidence in the weights (§2.4 "Paper"); by default
  each in two rounds, every person's own top candidate first (``CrowdAssociationParams.top_candidate_first``, a
  marked deviation that keeps duplicate proposals from taking a person's joints).
* ``crowd_association``: either of the two by ``CrowdAssociationParams.method``; returns a ``PoseNMSResult`` so the
  pose-NMS stage can be swapped for it. With ``CrowdAssociationParams.duplicate_oks`` set (default off) it then runs
  ``suppress_duplicates``, a greedy OKS filter on the output persons that AlphaPose does not have.
* ``interference_mask`` / ``crowd_index`` / ``interference_joints``: the paper's crowd index and interference joints
  (§2.2, §2.5).
* ``jc_targets`` / ``flip_interference``: JC-SPPE targets (target Gaussian plus μ = 0.5 Gaussians at interference
  joints, max-combined, only where the target joint is labelled) as the third-party port [MMP74] trains them
  (the authors released no training code, §2.2).

Conventions: keypoints (x, y) in source-image pixels, boxes (x1, y1, x2, y2) in the same pixels; heatmaps
``[N, K, H, W]`` cut from the crop regions of ``models.transforms`` (``CropSpec.crop_boxes``). Pure NumPy/SciPy (no
Ray), but for ``joint_candidates_torch``, which imports torch when called (the module imports without it). Inputs
are never modified.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.crops import INPUT_SIZE_HW
from models.keypoints import keypoint_set_for_num_joints
from models.pose_nms import PoseNMSResult

__all__ = [
    "JointCandidates",
    "CandidateParams",
    "ALPHAPOSE_CANDIDATES",
    "CrowdAssociationParams",
    "RELEASED_PARAMS",
    "candidate_params_for",
    "PAPER_PARAMS",
    "ASSOCIATION_METHODS",
    "JointGroups",
    "joint_candidates",
    "joint_candidates_torch",
    "group_current_candidates",
    "released_association",
    "paper_association",
    "crowd_association",
    "duplicate_oks_matrix",
    "suppress_duplicates",
    "interference_mask",
    "crowd_index",
    "interference_joints",
    "jc_targets",
    "flip_interference",
]

ASSOCIATION_METHODS = ("released", "paper")
AssociationMethod = Literal["released", "paper"]


# --------------------------------------------------------------------------------------------------------------
# Joint candidates (§2.3)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CandidateParams:
    """Constants of AlphaPose's multi-peak extraction (``findPeak`` / ``processPeaks``, ``img.py`` L437–498)."""

    window: int = 5  # ``maximum_filter(size=5)``: a peak is the maximum of its 5×5 neighbourhood
    peak_threshold: float = 0.1  # peaks must be > this
    low_threshold: float = 0.05  # a candidate < this is kept only if first, and ends the list
    # added to both heatmap coordinates before the back-projection (``pt = x + 0.2``); the released association's
    # only: the paper mode reads candidates without it (``candidate_params_for``)
    offset: float = 0.2
    max_candidates: int = 4  # M: slots kept per (person, joint); AlphaPose keeps every peak (see JointCandidates)

    def __post_init__(self) -> None:
        if self.window < 1 or self.window % 2 == 0 or self.max_candidates < 1:
            raise ValueError(f"invalid CandidateParams {self} (window must be odd and >= 1)")


ALPHAPOSE_CANDIDATES = CandidateParams()


def candidate_params_for(method: AssociationMethod, params: CandidateParams = ALPHAPOSE_CANDIDATES) -> CandidateParams:
    """The candidate extraction an association method reads: ``released`` → ``params`` as given (AlphaPose's
    ``+0.2``); ``paper`` → the same with ``offset = 0``.

    Deviation from AlphaPose, paper mode only: the released code's ``+0.2`` (candidates) and ``−0.3`` (output,
    ``CrowdAssociationParams.output_offset``) are pixel-convention quirks of its own crop transform. Through
    raypose's crop projection (``joint_candidates`` step 5) they shift every joint by about +1 px right and down
    (COCO-17 scenes of ``benchmarks/crowd.py``, no noise: mean error +1.15 / +0.93 px, against +0.09 / −0.07 for the
    argmax decoder), which cost the paper mode AP in the least crowded scenes. The released mode keeps them.
    """
    return params if method == "released" else dataclasses.replace(params, offset=0.0)


@dataclass(frozen=True)
class JointCandidates:
    """Joint candidates of N persons × K joints, at most M each, best first (slot 0 is AlphaPose's "current").

    Attributes:
        xy: float64 ``[N, K, M, 2]`` image pixels (0 in invalid slots).
        scores: float64 ``[N, K, M]`` heatmap values (0 in invalid slots).
        valid: bool ``[N, K, M]``; slot 0 is always valid, and valid slots come first.
        count: int64 ``[N, K]``: how many candidates AlphaPose's list has (>= 1); can exceed M.

    Deviation from AlphaPose: its list keeps every peak; here only the best M are kept (``count`` still says how
    many there were). The released association reads only slots 0 and 1 and ``count`` (one fall-back, no second
    round), so any M >= 2 gives its exact result.
    """

    xy: np.ndarray
    scores: np.ndarray
    valid: np.ndarray
    count: np.ndarray

    @property
    def num_persons(self) -> int:
        return int(self.xy.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.xy.shape[1])

    @property
    def max_candidates(self) -> int:
        return int(self.xy.shape[2])


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, any device
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _max_filter(hm: np.ndarray, window: int) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(hm, size=(1, 1, window, window), mode="reflect")`` for an odd window, as two
    passes of shifted maxima over a symmetric pad (SciPy's "reflect" repeats the edge sample, NumPy's "symmetric")
    (5× faster here; equality is tested)."""
    r = window // 2
    h, w = hm.shape[-2:]
    pad = np.pad(hm, ((0, 0), (0, 0), (r, r), (r, r)), mode="symmetric")
    rows = pad[:, :, 0:h, :].copy()
    for i in range(1, window):
        np.maximum(rows, pad[:, :, i : i + h, :], out=rows)
    out = rows[..., 0:w].copy()
    for j in range(1, window):
        np.maximum(out, rows[..., j : j + w], out=out)
    return out


def _candidate_inputs(
    shape: tuple[int, ...], crop_boxes_xyxy: Any, input_size_hw: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int]]:
    """The checks both candidate searches make: heatmaps ``[N, K, H, W]``, one crop box per person; returns the boxes
    as float64 ``[N, 4]`` and the input size (None: AlphaPose's 256×192)."""
    if len(shape) != 4:
        raise ValueError(f"heatmaps must be [N, K, H, W], got shape {tuple(shape)}")
    boxes = np.asarray(_as_numpy(crop_boxes_xyxy), dtype=np.float64).reshape(-1, 4)
    if len(boxes) != shape[0]:
        raise ValueError(f"{len(boxes)} crop boxes for {shape[0]} heatmap stacks")
    return boxes, INPUT_SIZE_HW if input_size_hw is None else input_size_hw


def joint_candidates(
    heatmaps: Any,
    crop_boxes_xyxy: Any,
    *,
    input_size_hw: tuple[int, int] | None = None,
    params: CandidateParams = ALPHAPOSE_CANDIDATES,
) -> JointCandidates:
    """Joint candidates of every heatmap, as AlphaPose's ``getMultiPeakPrediction`` (``eval.py`` L150–169).

    Per heatmap (``findPeak`` then ``processPeaks``, ``SPPE/src/utils/img.py``):

    1. peaks = pixels equal to their 5×5 maximum (``scipy.ndimage.maximum_filter``, its default ``reflect`` border;
       computed by ``_max_filter``)
       and > 0.1, sorted by value descending; ties by row descending, then column descending (AlphaPose's
       ``np.lexsort(-candidate_points.T)`` on (x, y, value) rows: kept quirk, it matters for plateaus, e.g. a
       Gaussian centred between pixels);
    2. no peak: the global argmax (first in row-major order) is the only candidate, whatever its value;
    3. walk the list: a value < 0.05 is skipped unless it is the first; the walk ends after keeping one < 0.05;
    4. quarter-pixel refinement of the integer peak (x, y): ``x ± 0.25`` towards the larger horizontal neighbour
       when ``0 < x < W − 2`` (kept quirk: ``W − 2``, not ``W − 1``); then ``y ± 0.25·inpH/inpW`` towards the larger
       vertical neighbour when ``0 < y < H − 2``, reading the neighbours in column ``int(x)`` of the *refined* x
       (kept quirk: after ``x − 0.25`` that is the column to the left);
    5. ``+ 0.2`` on both coordinates, then back to the image.

    Deviation from AlphaPose: step 5 projects through raypose's crop (``x = bx1 + x_hm·(bx2 − bx1)/W``, the
    inverse of ``models.transforms.image_to_heatmap_coords``, the crop that made the heatmaps) instead of the
    ``pytorch`` branch's ``transformBoxInvert`` for its own 0.3-enlarged, 320×256-padded crops; ``inpH/inpW`` is
    the crop input's aspect (256/192 here, 320/256 there).

    Args:
        heatmaps: float ``[N, K, H, W]`` (NumPy or torch, any device).
        crop_boxes_xyxy: ``[N, 4]`` crop regions the heatmaps cover (``CropSpec.crop_boxes`` of the detector boxes).
        input_size_hw: the SPPE input size (for the vertical refinement step); None: AlphaPose's 256×192
            (``models.transforms.INPUT_SIZE_HW``).
        params: constants; ``params.max_candidates`` is M.
    Returns:
        ``JointCandidates`` with M = ``params.max_candidates``.
    """
    hm = _as_numpy(heatmaps)
    boxes, input_size_hw = _candidate_inputs(hm.shape, crop_boxes_xyxy, input_size_hw)
    if not np.issubdtype(hm.dtype, np.floating):
        hm = hm.astype(np.float32)
    n, k, h, w = hm.shape
    m = params.max_candidates
    nk, hw = n * k, h * w
    flat = hm.reshape(nk, hw)

    # 1. peaks, sorted per map by (value desc, row desc, column desc) = (value desc, flat index desc).
    if nk:
        mx = _max_filter(hm, params.window)
        peak = (mx == hm) & (hm > params.peak_threshold)
        map_id, pix = np.nonzero(peak.reshape(nk, hw))
    else:
        map_id = pix = np.zeros(0, np.int64)
    val = flat[map_id, pix]
    order = np.lexsort((-pix, -val, map_id))
    map_id, pix, val = map_id[order], pix[order], val[order]
    # 2. maps without a peak: the argmax alone.
    has_peak = np.bincount(map_id, minlength=nk) > 0
    lone = np.flatnonzero(~has_peak)
    if len(lone):
        lone_pix = flat[lone].argmax(axis=1)
        map_id = np.concatenate([map_id, lone])
        pix = np.concatenate([pix, lone_pix])
        val = np.concatenate([val, flat[lone, lone_pix]])
        order = np.argsort(map_id, kind="stable")
        map_id, pix, val = map_id[order], pix[order], val[order]
    # 3. the walk: rank within the map; keep the first, and later ones unless < low (sorted, so the rest follow).
    counts_all = np.bincount(map_id, minlength=nk)
    starts = np.cumsum(counts_all) - counts_all
    rank = np.arange(len(map_id)) - starts[map_id]
    keep = (rank == 0) | ~(val < params.low_threshold)
    map_id, pix, val, rank = map_id[keep], pix[keep], val[keep], rank[keep]
    count = np.bincount(map_id, minlength=nk)
    slot = rank < m  # kept candidates are a prefix of the sorted list, so rank is also their rank after the walk
    cand_pix = np.zeros((nk, m), np.int64)
    scores = np.zeros((nk, m), np.float64)
    valid = np.zeros((nk, m), bool)
    cand_pix[map_id[slot], rank[slot]] = pix[slot]
    scores[map_id[slot], rank[slot]] = val[slot]
    valid[map_id[slot], rank[slot]] = True

    # 4. refinement directions (computed on every slot; invalid ones are masked at the end).
    y0, x0 = cand_pix // w, cand_pix % w
    maps = flat.reshape(nk, h, w)
    rows = np.arange(nk)[:, None]
    in_x = (x0 > 0) & (x0 < w - 2)
    right = maps[rows, y0, np.minimum(x0 + 1, w - 1)]
    left = maps[rows, y0, np.maximum(x0 - 1, 0)]
    dx = np.where(in_x, (right > left).astype(np.float64) - (right < left), 0.0)
    xc = np.floor(x0 + 0.25 * dx).astype(np.int64)  # int() of a value >= 0
    in_y = (y0 > 0) & (y0 < h - 2)
    down = maps[rows, np.minimum(y0 + 1, h - 1), xc]
    up = maps[rows, np.maximum(y0 - 1, 0), xc]
    dy = np.where(in_y, (down > up).astype(np.float64) - (down < up), 0.0)
    return _candidates_in_image(
        cand_pix, dx, dy, scores, valid, count, boxes, (n, k, h, w), input_size_hw=input_size_hw, params=params
    )


def _max_filter_torch(hm: Any, window: int) -> Any:
    """``_max_filter`` in torch for ``[B, H, W]`` (any device): two passes of shifted maxima over a −inf pad, i.e.
    the maximum over the window clipped to the map, which equals SciPy's ``reflect`` border (that border only
    repeats samples already inside the clipped window; equality is tested). On the CPU it is ~8× faster than
    ``max_pool2d`` with one channel per map."""
    import torch
    import torch.nn.functional as F

    r = window // 2
    h, w = hm.shape[-2:]
    pad = F.pad(hm, (0, 0, r, r), value=-math.inf)
    rows = pad[:, 0:h].clone()
    for i in range(1, window):
        torch.maximum(rows, pad[:, i : i + h], out=rows)
    pad = F.pad(rows, (r, r), value=-math.inf)
    out = pad[..., 0:w].clone()
    for j in range(1, window):
        torch.maximum(out, pad[..., j : j + w], out=out)
    return out


def joint_candidates_torch(
    heatmaps: Any,
    crop_boxes_xyxy: Any,
    *,
    input_size_hw: tuple[int, int] | None = None,
    params: CandidateParams = ALPHAPOSE_CANDIDATES,
) -> JointCandidates:
    """``joint_candidates`` run where the heatmaps are (torch, any device): the same candidates, order, counts and
    scores, and coordinates equal bit for bit (tested). AlphaPose's ``getMultiPeakPrediction`` (``eval.py``
    L150–169) over ``findPeak`` / ``processPeaks`` (``SPPE/src/utils/img.py``), vectorised over persons and joints.

    On the heatmaps' device (no copy of them to the host):

    1. the 5×5 maximum (``_max_filter_torch``, equal to SciPy's ``reflect`` border); peaks = pixels equal to it and
       > ``peak_threshold``;
    2. per map, one stable descending sort of the pixels (non-peaks keyed −inf) over the map reversed along its
       flat index, so equal values come out by flat index descending (row desc, then column desc: AlphaPose's
       ``np.lexsort`` quirk); −0.0 is made +0.0 first (a CUDA radix sort orders the two, NumPy's sort does not);
    3. ``count`` = max(1, peaks not < ``low_threshold``), which is what the walk keeps (the first peak always; a
       first one < low ends the walk, and later peaks < low are skipped); a map without a peak gets its first
       row-major ``argmax`` in slot 0;
    4. the quarter-pixel directions (−1, 0, 1) of the top-M slots, with the ``W − 2`` / ``H − 2`` and refined-column
       quirks of ``joint_candidates``.

    Only ``[N·K, M]`` results reach the host (flat peak index, the two directions, scores; ``[N·K]`` counts), where
    ``_candidates_in_image`` adds the offsets and projects through the crop box in float64, exactly as the NumPy
    version does. Scores are the heatmap's values (float32 from an SPPE), widened to float64 exactly.

    Args and Returns: as ``joint_candidates``; ``heatmaps`` must be a torch tensor (non-float ones are cast to
    float32, as there); ``crop_boxes_xyxy`` NumPy or torch, any device.
    """
    import torch

    boxes, input_size_hw = _candidate_inputs(tuple(heatmaps.shape), crop_boxes_xyxy, input_size_hw)
    hm = heatmaps.detach()
    if not hm.is_floating_point():
        hm = hm.float()
    n, k, h, w = hm.shape
    m = params.max_candidates
    nk, hw = n * k, h * w
    mm = min(m, hw)  # slots the map can fill; the rest stay invalid
    with torch.no_grad():
        flat = hm.reshape(nk, hw)
        mx = _max_filter_torch(hm.reshape(nk, h, w), params.window).reshape(nk, hw)
        peak = (mx == flat) & (flat > params.peak_threshold)
        # 2. stable descending sort of the reversed map: ties by flat index descending.
        key = (flat + 0.0).masked_fill(~peak, -math.inf)
        _, rev = torch.sort(key.flip(1), dim=1, descending=True, stable=True)
        pix = (hw - 1) - rev[:, :mm]
        # 3. counts and the argmax of maps without a peak.
        has_peak = peak.any(dim=1)
        count = (peak & ~(flat < params.low_threshold)).sum(dim=1).clamp(min=1)
        pix[:, 0] = torch.where(has_peak, pix[:, 0], flat.argmax(dim=1))
        scores = flat.gather(1, pix)
        # 4. refinement directions.
        y0, x0 = pix // w, pix % w
        in_x = (x0 > 0) & (x0 < w - 2)
        right = flat.gather(1, y0 * w + (x0 + 1).clamp(max=w - 1))
        left = flat.gather(1, y0 * w + (x0 - 1).clamp(min=0))
        dx = torch.where(in_x, (right > left).to(torch.int8) - (right < left).to(torch.int8), 0)
        xc = x0 - (dx < 0).long()  # floor(x0 ± 0.25)
        in_y = (y0 > 0) & (y0 < h - 2)
        down = flat.gather(1, (y0 + 1).clamp(max=h - 1) * w + xc)
        up = flat.gather(1, (y0 - 1).clamp(min=0) * w + xc)
        dy = torch.where(in_y, (down > up).to(torch.int8) - (down < up).to(torch.int8), 0)
        # the only copies to the host: [NK, 3·mm + 1] integers and [NK, mm] scores (float32 holds bf16/fp16 exactly)
        ints = torch.cat([pix, dx.long(), dy.long(), count[:, None]], dim=1).cpu().numpy()
        scores = scores.to(torch.float64 if flat.dtype == torch.float64 else torch.float32).cpu().numpy()
    pad = ((0, 0), (0, m - mm))
    cand_pix, dx, dy = (np.pad(ints[:, i * mm : (i + 1) * mm], pad) for i in range(3))
    count = ints[:, 3 * mm]
    scores = np.pad(scores.astype(np.float64), pad)
    valid = np.arange(m)[None, :] < count[:, None]
    scores[~valid] = 0.0
    cand_pix[~valid] = 0
    return _candidates_in_image(
        cand_pix, dx, dy, scores, valid, count, boxes, (n, k, h, w), input_size_hw=input_size_hw, params=params
    )


def _candidates_in_image(
    cand_pix: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    scores: np.ndarray,
    valid: np.ndarray,
    count: np.ndarray,
    boxes: np.ndarray,
    shape_nkhw: tuple[int, int, int, int],
    *,
    input_size_hw: tuple[int, int],
    params: CandidateParams,
) -> JointCandidates:
    """Steps 4 (the quarter-pixel moves) and 5 of ``joint_candidates`` on the host, shared by its NumPy and torch
    versions so both give the same float64 coordinates bit for bit: integer peaks ``cand_pix`` (flat heatmap
    index) and refinement directions ``dx`` / ``dy`` (−1, 0, 1), all ``[N·K, M]``, → ``JointCandidates``."""
    n, k, h, w = shape_nkhw
    m = cand_pix.shape[1]
    y0, x0 = cand_pix // w, cand_pix % w
    xr = x0 + 0.25 * np.asarray(dx, np.float64)
    yr = y0 + 0.25 * input_size_hw[0] / input_size_hw[1] * np.asarray(dy, np.float64)
    # 5. offset and back-projection through each person's crop box.
    b = np.repeat(boxes, k, axis=0)[:, None, :]  # [NK, 1, 4]
    x_img = b[..., 0] + (xr + params.offset) * (b[..., 2] - b[..., 0]) / w
    y_img = b[..., 1] + (yr + params.offset) * (b[..., 3] - b[..., 1]) / h
    xy = np.stack([x_img, y_img], axis=-1)
    xy[~valid] = 0.0
    return JointCandidates(
        xy=xy.reshape(n, k, m, 2),
        scores=np.asarray(scores, np.float64).reshape(n, k, m),
        valid=valid.reshape(n, k, m),
        count=count.reshape(n, k).astype(np.int64),
    )


# --------------------------------------------------------------------------------------------------------------
# Global association (§2.4)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CrowdAssociationParams:
    """Constants of the association, with ``matching.py``'s values as defaults."""

    method: AssociationMethod = "released"
    low_score: float = 0.05  # a current candidate < this joins no group and gets cost 0
    update_score: float = 0.3  # a joining candidate >= this moves the group centre and area
    radius_factor: float = 0.1  # join when normalised distance <= radius_factor · σ_k
    sigma_scale: float = 10.0  # σ_k = sigma_scale · the keypoint set's OKS sigma (released: COCO's, not /10)
    unmatched_score: float = 1e-5  # score of a person's joint that lost its group and has no other candidate
    # subtracted from both output coordinates (``x.item() - 0.3``); released mode only (``candidate_params_for``)
    output_offset: float = 0.3
    min_max_score: float = 0.1  # drop a person whose best joint score is < this
    area_scale: float = 1.5  # drop when area_scale² · keypoint-extent area < min_area
    min_area: float = 40.0 * 40.0
    use_box_score: bool = True  # paper mode only: person confidence = box score × mean current score
    # paper mode only: each proposal first competes for the joint node of its own top candidate (one matching per
    # type on those edges alone), and only the persons and nodes left over enter the matching over all edges. Not
    # the paper's single matching (False), whose sum lets a duplicate proposal take a person's joint while the
    # person takes a weaker node (see paper_association)
    top_candidate_first: bool = True
    # Not AlphaPose's (``crowd_association`` only, see ``suppress_duplicates``): drop an output person whose OKS with
    # a higher-scored kept person is >= duplicate_oks, over the joints both score > duplicate_joint_score. None (off,
    # AlphaPose's output) by measurement: on benchmarks/crowd.py no threshold raised AP (see suppress_duplicates).
    duplicate_oks: float | None = None
    duplicate_joint_score: float = 0.05

    def __post_init__(self) -> None:
        if self.method not in ASSOCIATION_METHODS:
            raise ValueError(f"method={self.method!r}; choose one of {', '.join(ASSOCIATION_METHODS)}")
        for name in (
            "low_score",
            "update_score",
            "radius_factor",
            "sigma_scale",
            "unmatched_score",
            "min_area",
            "duplicate_joint_score",
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"CrowdAssociationParams.{name}={v!r} must be a finite number >= 0")
        d = self.duplicate_oks
        if d is not None and not (isinstance(d, (int, float)) and not isinstance(d, bool) and 0 < d <= 1):
            raise ValueError(f"CrowdAssociationParams.duplicate_oks={d!r} must be in (0, 1], or None (off)")


RELEASED_PARAMS = CrowdAssociationParams()
PAPER_PARAMS = CrowdAssociationParams(method="paper")


@dataclass(frozen=True)
class JointGroups:
    """The joint groups (nodes) of the released grouping.

    Attributes:
        group_id: int64 ``[N, K]``: the group of each person's current candidate, −1 for none (score < low).
        centers: float64 ``[K, G, 2]``: final group centres (G = N, the most groups a type can have).
        num_groups: int64 ``[K]``: groups opened per joint type (creation order = column order).
        person_scores: float64 ``[N]``: h_n, the mean current-candidate score.
    """

    group_id: np.ndarray
    centers: np.ndarray
    num_groups: np.ndarray
    person_scores: np.ndarray


def _check_inputs(boxes_xyxy, box_scores, cands: JointCandidates) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(_as_numpy(boxes_xyxy), dtype=np.float64).reshape(-1, 4)
    bs = np.asarray(_as_numpy(box_scores), dtype=np.float64).reshape(-1)
    if len(boxes) != cands.num_persons or len(bs) != cands.num_persons:
        raise ValueError(f"{len(boxes)} boxes and {len(bs)} box scores for {cands.num_persons} candidate persons")
    return boxes, bs


def _oks_sigmas(k: int, sigmas: Sequence[float] | None) -> np.ndarray:
    """The OKS sigmas (pycocotools scale): ``sigmas``, or the keypoint set's with K joints."""
    if sigmas is None:
        return keypoint_set_for_num_joints(k).sigmas_array()
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.shape != (k,):
        raise ValueError(f"sigmas must have shape ({k},), got {sig.shape}")
    return sig


def _sigmas(k: int, sigmas: Sequence[float] | None, params: CrowdAssociationParams) -> np.ndarray:
    return _oks_sigmas(k, sigmas) * params.sigma_scale


def _sequential_mean(s: np.ndarray) -> np.ndarray:
    """Mean over the last axis summed joint by joint in order (AlphaPose's loop), so a reference loop agrees."""
    total = np.zeros(s.shape[:-1])
    for j in range(s.shape[-1]):
        total = total + s[..., j]
    return total / s.shape[-1]


def group_current_candidates(
    boxes_xyxy: Any,
    cands: JointCandidates,
    *,
    sigmas: Sequence[float] | None = None,
    params: CrowdAssociationParams = RELEASED_PARAMS,
) -> JointGroups:
    """AlphaPose's ``grouping`` (``matching.py`` L104–190), vectorised over joint types, persons in input order.

    Each person's current candidate (x₀, y₀, s₀) of type k: none if s₀ < low; else it joins the first group g of
    type k (creation order) with ``sqrt(((x_c − x₀)² + (y_c − y₀)²)/a_g) <= radius_factor·σ_k``, where
    ``a_g = (Σ w·h)(Σ hgt·h)/(Σ h)²`` over the group's contributing persons (box width w, height hgt, person score
    h); joining with s₀ >= update_score adds (x₀s₀, y₀s₀, s₀) to the centre sums and (w·h, hgt·h, h) to the area
    sums (a lower-scored member joins without moving either). No match: a new group, centre (x₀, y₀), sums from
    this person. Kept quirk: σ_k are the OKS sigmas ×10 (``sigma_scale``), as AlphaPose's module array.
    """
    boxes = np.asarray(_as_numpy(boxes_xyxy), dtype=np.float64).reshape(-1, 4)
    n, k = cands.num_persons, cands.num_joints
    radius = params.radius_factor * _sigmas(k, sigmas, params)
    x0s, y0s, s0s = cands.xy[:, :, 0, 0], cands.xy[:, :, 0, 1], cands.scores[:, :, 0]
    hs = _sequential_mean(s0s)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    g = max(n, 1)
    sums = np.zeros((k, g, 3))  # Σ x·s, Σ y·s, Σ s
    area = np.ones((k, g, 3))  # Σ w·h, Σ hgt·h, Σ h (ones in unopened slots: never read, masked by num_groups)
    centers = np.zeros((k, g, 2))
    num = np.zeros(k, np.int64)
    group_id = np.full((n, k), -1, np.int64)
    kk = np.arange(k)
    slots = np.arange(g)[None, :]
    with np.errstate(all="ignore"):  # h = 0 gives 0/0 = NaN areas, as AlphaPose (NaN never joins)
        for p in range(n):
            x0, y0, s0 = x0s[p], y0s[p], s0s[p]
            active = ~(s0 < params.low_score)
            a = area[:, :, 0] * area[:, :, 1] / area[:, :, 2] ** 2
            dist = np.sqrt(((centers[:, :, 0] - x0[:, None]) ** 2 + (centers[:, :, 1] - y0[:, None]) ** 2) / a)
            near = (dist <= radius[:, None]) & (slots < num[:, None])
            first = near.argmax(axis=1)
            join = active & near.any(axis=1)
            new = active & ~near.any(axis=1)
            gid = np.where(join, first, num)
            add = np.stack([x0 * s0, y0 * s0, s0], axis=1)
            add_area = np.stack([np.full(k, bw[p] * hs[p]), np.full(k, bh[p] * hs[p]), np.full(k, hs[p])], axis=1)
            upd = join & (s0 >= params.update_score)
            ku, gu = kk[upd], gid[upd]
            sums[ku, gu] += add[upd]
            area[ku, gu] += add_area[upd]
            centers[ku, gu] = sums[ku, gu, :2] / sums[ku, gu, 2:3]
            kn, gn = kk[new], gid[new]
            sums[kn, gn] = add[new]
            area[kn, gn] = add_area[new]
            centers[kn, gn, 0], centers[kn, gn, 1] = x0[new], y0[new]
            num[new] += 1
            group_id[p, active] = gid[active]
    return JointGroups(group_id=group_id, centers=centers, num_groups=num, person_scores=hs)


def _output(
    boxes: np.ndarray,
    box_scores: np.ndarray,
    xy: np.ndarray,
    s: np.ndarray,
    params: CrowdAssociationParams,
    output_offset: float,
) -> PoseNMSResult:
    """``candidate_reselect``'s output filter and score (``matching.py`` L60–101), for every person at once.

    Kept quirks: the extent starts from ``xmax = ymax = 0`` and ``xmin = ymin = 1e5`` (so it is measured from 0
    when every x is negative), and ``max_score`` starts from 0. Deviation from AlphaPose: float64 throughout (its
    output tensors are float32).
    """
    k = s.shape[1]
    xmax = np.maximum(0.0, xy[..., 0].max(axis=1, initial=-np.inf))
    xmin = np.minimum(1e5, xy[..., 0].min(axis=1, initial=np.inf))
    ymax = np.maximum(0.0, xy[..., 1].max(axis=1, initial=-np.inf))
    ymin = np.minimum(1e5, xy[..., 1].min(axis=1, initial=np.inf))
    best = s.max(axis=1, initial=-np.inf)
    area = params.area_scale**2 * (xmax - xmin) * (ymax - ymin)
    keep = ~(best < params.min_max_score) & ~(area < params.min_area)
    total = np.zeros(len(s))
    for j in range(k):  # mean_score += s / K, joint by joint
        total = total + s[:, j] / k
    pose_scores = total + np.maximum(0.0, best) + box_scores
    kept = np.flatnonzero(keep).astype(np.int64)
    return PoseNMSResult(
        kept=kept,
        keypoints=xy[kept] - output_offset,
        keypoint_scores=s[kept],
        pose_scores=pose_scores[kept],
        boxes_xyxy=boxes[kept],
        box_scores=box_scores[kept],
        merged_indices=tuple(np.array([i], np.int64) for i in kept.tolist()),
    )


def released_association(
    boxes_xyxy: Any,
    box_scores: Any,
    cands: JointCandidates,
    *,
    sigmas: Sequence[float] | None = None,
    params: CrowdAssociationParams = RELEASED_PARAMS,
) -> PoseNMSResult:
    """AlphaPose's ``candidate_reselect`` (``matching.py`` L14–101, ``pytorch`` branch) for any keypoint set.

    1. ``group_current_candidates`` (person score h_n = mean current score; groups per type).
    2. Per type k, an N × G_k cost matrix: ``−h_n·s₀`` at (person, its own group) when s₀ >= low (else 0), 0
       elsewhere, solved by ``scipy.optimize.linear_sum_assignment``; a person only gains from its own group, so
       the matching decides which member of a group keeps it.
    3. Matched (person, own group): the joint moves to the group centre, keeps its score. Unmatched with more than
       one candidate: the next candidate becomes current (its own position and score; no second matching).
       Unmatched with one candidate: score ``unmatched_score`` (1e-5), position kept. No group: unchanged.
    4. Output filter (``_output``): coordinates − 0.3 px; drop when max score < 0.1 or 1.5²·extent area < 40²;
       ``pose_score = mean + max + box_score``.

    Deviation from AlphaPose: K is any keypoint set's (AlphaPose: ``range(17)`` and COCO sigmas), with σ_k from
    ``models.keypoints`` (or ``sigmas``) × ``params.sigma_scale``; the per-type costs and the fall-back are
    computed for all persons at once. Ties in the matching are resolved by SciPy's ``linear_sum_assignment`` (the
    same call as AlphaPose; older SciPy versions used another solver, so exact ties may fall differently).

    Args:
        boxes_xyxy: ``[N, 4]`` detector boxes (the group reference sizes), pixels.
        box_scores: ``[N]`` detector scores.
        cands: ``joint_candidates`` of the N persons (M >= 2 slots needed when some ``count`` > 1).
        sigmas: ``[K]`` OKS sigmas (pycocotools scale, /10); default from ``models.keypoints`` by K.
    Returns:
        ``PoseNMSResult`` (NumPy) of the surviving persons in input order; ``kept`` = their input indices,
        ``merged_indices`` = ``(i,)`` each (nothing is merged), ``boxes_xyxy``/``box_scores`` the detector's.
    """
    from scipy.optimize import linear_sum_assignment  # ~0.4 s to import: only when associating

    boxes, bs = _check_inputs(boxes_xyxy, box_scores, cands)
    n, k = cands.num_persons, cands.num_joints
    if n == 0:
        return _output(boxes, bs, np.zeros((0, k, 2)), np.zeros((0, k)), params, params.output_offset)
    if cands.max_candidates < 2 and (cands.count > 1).any():
        raise ValueError("the released association needs at least 2 candidate slots (max_candidates >= 2)")
    groups = group_current_candidates(boxes, cands, sigmas=sigmas, params=params)
    gid, hs = groups.group_id, groups.person_scores
    s0 = cands.scores[:, :, 0]
    matched = np.zeros((n, k), bool)
    persons = np.arange(n)
    for j in range(k):
        cost = np.zeros((n, int(groups.num_groups[j])))
        member = gid[:, j] >= 0
        cost[persons[member], gid[member, j]] = np.where(
            s0[member, j] < params.low_score, 0.0, -(hs[member] * s0[member, j])
        )
        rows, cols = linear_sum_assignment(cost)
        assigned = np.full(n, -2, np.int64)
        assigned[rows] = cols
        matched[:, j] = member & (assigned == gid[:, j])
    in_group = gid >= 0
    xy = cands.xy[:, :, 0].copy()
    s = s0.copy()
    win = in_group & matched
    pw, kw = np.nonzero(win)
    xy[pw, kw] = groups.centers[kw, gid[pw, kw]]
    fall = in_group & ~matched & (cands.count > 1)
    xy[fall] = cands.xy[:, :, 1][fall]
    s[fall] = cands.scores[:, :, 1][fall]
    s[in_group & ~matched & (cands.count <= 1)] = params.unmatched_score
    return _output(boxes, bs, xy, s, params, params.output_offset)


def paper_association(
    boxes_xyxy: Any,
    box_scores: Any,
    cands: JointCandidates,
    *,
    sigmas: Sequence[float] | None = None,
    params: CrowdAssociationParams = PAPER_PARAMS,
) -> PoseNMSResult:
    """The paper's "global maximum joints association" on a person–joint graph (Li et al., CVPR 2019).

    The paper's text could not be read here; this is its formulation as published summaries
    state it, with the released code's constants where the paper gives none:

    * Joint nodes: per type k, *every* valid candidate with score >= low of every person, in score order
      (descending; ties by person then slot), joins the first node whose centre is within
      ``radius_factor·σ_k`` (the released normalised distance, node area = h-weighted mean box width × height of
      its members), else opens a node; a node's centre is the score-weighted mean of its members.
    * Person nodes: one per proposal, confidence c_n = box score × mean current score (``use_box_score``; the mean
      alone otherwise).
    * Edges person → joint node weighted ``c_n · s`` (s = that person's best candidate in the node).
    * K independent maximum-weight bipartite matchings (``linear_sum_assignment`` on −weights); a person matched
      to a node takes the node centre and its own candidate's score; an unmatched person keeps its top candidate
      with score ``unmatched_score``. With ``top_candidate_first`` (the default, a deviation: below) each matching
      runs in two rounds.
    * The output filter and score of the released code (``_output``), without its ``−0.3`` output offset; read
      candidates extracted without its ``+0.2`` (``candidate_params_for``, which says why).

    Deviation from AlphaPose: AlphaPose (``candidate_reselect``) implements another algorithm (§2.4 "Released
    code"); this one exists for the comparison in ``benchmarks/crowd.py``.

    Deviation from the paper, ``top_candidate_first`` (default on; off = the single matching above): per type,
    round 1 matches each person only to the node of its own top candidate (slot 0, what the JC-SPPE is trained to
    make its target: Li et al. attenuate interference peaks to μ = 0.5), weight ``c_n·s₀``; the contested nodes go
    by maximum weight, as in AlphaPose's ``matching.py`` ``candidate_reselect``, whose cost matrix has exactly
    these edges. Round 2 is the paper's matching over all edges between the persons and nodes round 1 left
    unmatched (where AlphaPose takes the next candidate without a second matching). Why: the detector gives a
    person several proposals, and the single matching maximises a *sum*, so with two proposals p (confidence
    c_p) and d (c_d) of one person sharing its joint node A, and p holding a weaker candidate s_pB in a node B
    that d lacks, it gives A to d and B to p whenever ``c_d·s_dA + c_p·s_pB > c_p·s_pA``: the person's output
    pose (p, the higher score) gets a wrong joint and the duplicate the right one. Pose NMS merges the duplicate
    instead, and a filter on the output (``suppress_duplicates``) comes too late to undo it. On
    ``benchmarks/crowd.py`` (CrowdPose-14, perfect heatmaps) this swap was the commonest way the single matching
    lost a joint that pose NMS got right, e.g. a wrist given to a duplicate box (c_d·s_dA = 0.828) while the
    person took a clipped border peak 19 px off another person's wrist (c_p·s_pB = 0.167 > 0.924 − 0.828). The
    price: a person whose top candidate is another person's joint and wins it in round 1 keeps it, where the single
    matching could have moved it to its own weaker candidate; on that benchmark's noisy oracles the two rounds
    still gave the higher AP at every noise level and set.
    """
    from scipy.optimize import linear_sum_assignment  # ~0.4 s to import: only when associating

    def max_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maximum-weight matching on ``weight`` (>= 0): the matched (row, column) pairs of positive weight."""
        rows, cols = linear_sum_assignment(-weight)
        good = weight[rows, cols] > 0
        return rows[good], cols[good]

    boxes, bs = _check_inputs(boxes_xyxy, box_scores, cands)
    n, k = cands.num_persons, cands.num_joints
    if n == 0:
        return _output(boxes, bs, np.zeros((0, k, 2)), np.zeros((0, k)), params, 0.0)
    radius = params.radius_factor * _sigmas(k, sigmas, params)
    s0 = cands.scores[:, :, 0]
    hs = _sequential_mean(s0)
    conf = hs * bs if params.use_box_score else hs
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    xy = cands.xy[:, :, 0].copy()
    s = np.full((n, k), params.unmatched_score)
    for j in range(k):
        sc = cands.scores[:, j]  # [N, M]
        ok = cands.valid[:, j] & ~(sc < params.low_score)
        pn, slot = np.nonzero(ok)
        order = np.lexsort((slot, pn, -sc[pn, slot]))
        pn, slot = pn[order], slot[order]
        pts = cands.xy[pn, j, slot]
        ss = sc[pn, slot]
        c = len(pn)
        sums = np.zeros((c, 3))
        ar = np.zeros((c, 3))
        node = np.empty(c, np.int64)
        num = 0
        with np.errstate(all="ignore"):
            for t in range(c):
                if num:
                    a = ar[:num, 0] * ar[:num, 1] / ar[:num, 2] ** 2
                    ctr = sums[:num, :2] / sums[:num, 2:3]
                    d = np.sqrt(((ctr - pts[t]) ** 2).sum(axis=1) / a)
                    hit = np.flatnonzero(d <= radius[j])
                else:
                    hit = np.zeros(0, np.int64)
                g = int(hit[0]) if len(hit) else num
                num += 0 if len(hit) else 1
                p = pn[t]
                sums[g] += (pts[t, 0] * ss[t], pts[t, 1] * ss[t], ss[t])
                ar[g] += (bw[p] * hs[p], bh[p] * hs[p], hs[p])
                node[t] = g
        if num == 0:
            continue
        centers = sums[:num, :2] / sums[:num, 2:3]
        best = np.zeros((n, num))
        np.maximum.at(best, (pn, node), ss)
        weight = conf[:, None] * best
        if params.top_candidate_first:
            top = np.full(n, -1, np.int64)
            top[pn[slot == 0]] = node[slot == 0]  # the node of each person's top candidate (-1: below low)
            own = np.zeros_like(weight)
            has = np.flatnonzero(top >= 0)
            own[has, top[has]] = weight[has, top[has]]  # = c_n·s₀: the top candidate is the person's best in it
            r1, c1 = max_weight(own)
            rest = weight.copy()
            rest[r1, :] = 0.0
            rest[:, c1] = 0.0
            r2, c2 = max_weight(rest)
            rows, cols = np.concatenate([r1, r2]), np.concatenate([c1, c2])
        else:
            rows, cols = max_weight(weight)
        xy[rows, j] = centers[cols]
        s[rows, j] = best[rows, cols]
    return _output(boxes, bs, xy, s, params, 0.0)


def crowd_association(
    boxes_xyxy: Any,
    box_scores: Any,
    cands: JointCandidates,
    *,
    sigmas: Sequence[float] | None = None,
    params: CrowdAssociationParams = RELEASED_PARAMS,
) -> PoseNMSResult:
    """``released_association`` or ``paper_association`` by ``params.method``, then ``suppress_duplicates`` at
    ``params.duplicate_oks`` (unless None); the pose-NMS stage's contract."""
    fn = released_association if params.method == "released" else paper_association
    r = fn(boxes_xyxy, box_scores, cands, sigmas=sigmas, params=params)
    if params.duplicate_oks is None:
        return r
    return suppress_duplicates(r, params.duplicate_oks, sigmas=sigmas, joint_score=params.duplicate_joint_score)


def duplicate_oks_matrix(
    keypoints: Any, keypoint_scores: Any, *, sigmas: Sequence[float] | None = None, joint_score: float = 0.05
) -> np.ndarray:
    """float64 ``[N, N]``: OKS of person j against person i as reference (row i), over the joints both score
    > ``joint_score``; 0 where they share none.

    COCO's OKS (``models.tracking_metrics.oks_matrix``'s formula: ``exp(−d²/(2·a_i·(2σ)²))`` averaged), with the
    joint mask of the *pair* instead of the reference's labels, and the reference's scale ``a_i`` = the area of the
    box around its joints scoring > ``joint_score`` (0 when it has fewer than two: such a pose has no scale).
    """
    kp = np.asarray(_as_numpy(keypoints), dtype=np.float64)
    s = np.asarray(_as_numpy(keypoint_scores), dtype=np.float64)
    n, k = s.shape
    sig = _oks_sigmas(k, sigmas)
    ok = s > joint_score  # [N, K]
    x, y = kp[..., 0], kp[..., 1]
    w = np.where(ok, x, -np.inf).max(1) - np.where(ok, x, np.inf).min(1)
    h = np.where(ok, y, -np.inf).max(1) - np.where(ok, y, np.inf).min(1)
    area = np.where(ok.sum(1) >= 2, w * h, 0.0)
    both = ok[:, None, :] & ok[None, :, :]  # [N, N, K]
    d2 = ((kp[:, None] - kp[None]) ** 2).sum(-1)  # [N, N, K]
    e = np.exp(-d2 / (2.0 * (2.0 * sig) ** 2 * (area[:, None, None] + np.spacing(1))))
    num = (e * both).sum(-1)
    cnt = both.sum(-1)
    return np.where(cnt > 0, num / np.maximum(cnt, 1), 0.0)


def suppress_duplicates(
    result: PoseNMSResult,
    threshold: float,
    *,
    sigmas: Sequence[float] | None = None,
    joint_score: float = 0.05,
) -> PoseNMSResult:
    """Greedy OKS suppression of the association's output persons: visited by descending ``pose_scores`` (ties:
    input order), a person is dropped when its OKS with an already kept one (``duplicate_oks_matrix``: the kept
    person's sigmas-scaled OKS over the joints both score > ``joint_score``) is >= ``threshold``.

    Deviation from AlphaPose: its ``--matching`` path has no such step (``pytorch`` branch, ``dataloader.py``
    ``DataWriter``: ``result = matching(boxes, scores, preds)``, i.e. ``matching.py`` ``candidate_reselect`` in place
    of ``pPose_nms.py`` ``pose_nms``, and the result is written as it is): association replaces pose NMS, and two
    detector boxes on one person can come out as two persons (the duplicate keeps the joints it won, e.g. a second
    candidate or a second joint node, and ``unmatched_score`` elsewhere). ``CrowdAssociationParams.duplicate_oks``
    turns this step on for ``crowd_association``; its default ``None`` keeps AlphaPose's output, because on
    ``benchmarks/crowd.py`` (a duplicate DPG box for half of the persons) it removed surplus poses but raised no AP:
    at 0.7 / 0.8 / 0.9 every overall AP moved by -0.009 … +0.003, and taking out *every* pose that matches no
    person (an oracle) did not raise the paper mode's AP either. Such a duplicate differs from its person exactly
    where it won other joints, so its OKS with the person stays mostly below 0.9, and a lower-scored second guess
    costs COCO-style AP little. The scale is the kept person's keypoint extent: its detector box area instead
    suppressed neighbours in crowds (paper mode, CrowdPose-14, perfect heatmaps: AP 0.976 → 0.966 at 0.8).

    Args:
        result: ``released_association`` / ``paper_association`` output (NumPy).
        threshold: OKS at or above which the lower-scored person goes.
        sigmas: ``[K]`` OKS sigmas (pycocotools scale); default from ``models.keypoints`` by K.
        joint_score: joints scoring <= this (e.g. the association's 1e-5 for a lost joint) take no part.
    Returns:
        The surviving persons, input order kept; ``kept`` and ``merged_indices`` still name the association's input.
    """
    n = len(result)
    if n < 2:
        return result
    oks = duplicate_oks_matrix(result.keypoints, result.keypoint_scores, sigmas=sigmas, joint_score=joint_score)
    dup = oks >= threshold
    alive = np.ones(n, bool)
    for i in np.argsort(-np.asarray(result.pose_scores, np.float64), kind="stable").tolist():
        if alive[i]:
            dup[i, i] = False
            alive &= ~dup[i]
    keep = np.flatnonzero(alive)
    if len(keep) == n:
        return result
    return PoseNMSResult(
        kept=np.asarray(result.kept)[keep],
        keypoints=np.asarray(result.keypoints)[keep],
        keypoint_scores=np.asarray(result.keypoint_scores)[keep],
        pose_scores=np.asarray(result.pose_scores)[keep],
        boxes_xyxy=np.asarray(result.boxes_xyxy)[keep],
        box_scores=np.asarray(result.box_scores)[keep],
        merged_indices=tuple(result.merged_indices[i] for i in keep.tolist()),
    )


# --------------------------------------------------------------------------------------------------------------
# Crowd index and interference joints (§2.2, §2.5)
# --------------------------------------------------------------------------------------------------------------


def interference_mask(keypoints: Any, visible: Any, boxes_xyxy: Any, *, inclusive: bool = True) -> np.ndarray:
    """bool ``[P, Q, K]``: joint k of person q (q ≠ p) is labelled and lies inside person p's box.

    The paper's interference joints of p are these joints (Li et al., CVPR 2019: "labelled
    joints of *other* persons lying inside person i's box"). Bounds are inclusive (``x1 <= x <= x2``), the rule that
    reproduces the released ``crowdIndex`` values best (crowdposetools' ``crowdIndex``).

    Args:
        keypoints: float ``[P, K, 2]`` image pixels.
        visible: bool or 0/1/2 ``[P, K]`` (labelled = > 0).
        boxes_xyxy: ``[P, 4]``.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    vis = np.asarray(visible) > 0
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    x, y = kp[None, :, :, 0], kp[None, :, :, 1]
    x1, y1, x2, y2 = (b[:, i, None, None] for i in range(4))
    if inclusive:
        inside = (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)
    else:
        inside = (x > x1) & (x < x2) & (y > y1) & (y < y2)
    p = len(b)
    return inside & vis[None] & ~np.eye(p, dtype=bool)[:, :, None]


def crowd_index(keypoints: Any, visible: Any, boxes_xyxy: Any, *, decimals: int | None = 2) -> float:
    """CrowdPose's Crowd Index of one image: ``CI = (1/n) Σ_i N_b^i / N_a^i``.

    N_a^i = labelled joints of person i, N_b^i = labelled joints of other persons inside person i's box
    (``interference_mask``, inclusive bounds); the mean runs over persons with N_a > 0 (callers pass the persons
    CrowdPose counts: non-crowd, ``num_keypoints > 0``). Rounded to ``decimals`` as the released JSON; 0 for an
    image without such persons. On the released val JSON this rule reproduces the stored value exactly for 79.9 %
    of images, mean absolute error 0.033 (crowdposetools' ``crowdIndex``).

    Args:
        keypoints: float ``[P, K, 2]``; visible: ``[P, K]`` (> 0 = labelled); boxes_xyxy: ``[P, 4]``
            (CrowdPose's ``bbox`` [x, y, w, h] → [x, y, x + w, y + h]).
    """
    vis = np.asarray(visible) > 0
    na = vis.sum(axis=1)
    if not (na > 0).any():
        return 0.0
    nb = interference_mask(keypoints, vis, boxes_xyxy).sum(axis=(1, 2))
    ci = float(np.mean(nb[na > 0] / na[na > 0]))
    return round(ci, decimals) if decimals is not None else ci


def interference_joints(
    keypoints: Any, visible: Any, box_xyxy: Any, exclude: int | None = None, *, inclusive: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The interference joints of one proposal: labelled joints of the persons other than ``exclude`` in the box.

    Returns ``(xy float64 [J, 2], types int64 [J])``, persons in order, joints in order (the layout [MMP74]
    appends after the target triplets).
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, np.shape(keypoints)[-2], 2)
    vis = np.asarray(visible).reshape(kp.shape[:2]) > 0
    x1, y1, x2, y2 = np.asarray(box_xyxy, dtype=np.float64).reshape(4)
    x, y = kp[..., 0], kp[..., 1]
    inside = (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2) if inclusive else (x > x1) & (x < x2) & (y > y1) & (y < y2)
    mask = vis & inside
    if exclude is not None:
        mask[exclude] = False
    q, j = np.nonzero(mask)
    return kp[q, j], j.astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# JC-SPPE targets (§2.2)
# --------------------------------------------------------------------------------------------------------------


def jc_targets(
    keypoints_hm: Any,
    visible: Any,
    interference_hm: Any,
    interference_types: Any,
    heatmap_hw: tuple[int, int] = (64, 48),
    sigma: float = 2.0,
    attenuation: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """JC-SPPE heatmap targets of one proposal: the target Gaussian plus attenuated Gaussians at interference joints.

    Channel k = ``max(target_k, attenuation · G(interference joint of type k) …)``, element-wise max, drawn only
    where the target joint k has weight > 0.5 (labelled and its window on the map). Every Gaussian is AlphaPose's
    training Gaussian (``models.targets.gaussian_targets``: rounded centre, 13×13 window for σ = 2, peak 1).
    Weights are the target's (``gaussian_targets``), unchanged by interference joints.

    Facts: CrowdPose paper (μ = 0.5 attenuation factor, [paper-r]); max-combination, the σ and the labelled-target
    condition from the third-party port [MMP74] ``TopDownCrowdGenerateTarget`` (the authors released no training
    code).

    Args:
        keypoints_hm: float ``[K, 2]`` target joints in heatmap pixels; visible: ``[K]``.
        interference_hm: float ``[J, 2]`` interference joints in heatmap pixels; interference_types: int ``[J]``.
    Returns:
        ``target`` float32 ``[K, H, W]`` and ``target_weight`` float32 ``[K]``.
    """
    from models.targets import gaussian_targets  # a training-side import (torch): not at module level

    target, weight = gaussian_targets(keypoints_hm, visible, heatmap_hw, sigma)
    pts = np.asarray(interference_hm, dtype=np.float64).reshape(-1, 2)
    types = np.asarray(interference_types, dtype=np.int64).reshape(-1)
    if len(pts) != len(types):
        raise ValueError(f"{len(pts)} interference joints and {len(types)} types")
    if len(pts) == 0:
        return target, weight
    if (types < 0).any() or (types >= len(weight)).any():
        raise ValueError(f"interference types must be in [0, {len(weight)})")
    use = weight[types] > 0.5
    if not use.any():
        return target, weight
    maps, _ = gaussian_targets(pts[use], np.ones(int(use.sum()), np.float32), heatmap_hw, sigma)
    np.maximum.at(target, types[use], (np.float32(attenuation) * maps).astype(np.float32))
    return target, weight


def flip_interference(
    points_xy: Any, types: Any, flip_pairs: Sequence[tuple[int, int]], image_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror interference joints with ``models.targets.flip_keypoints``'s rule: ``x → W − x − 1`` and left/right
    joint types swapped (as [MMP74] ``TopDownCrowdRandomFlip`` swaps them through its joint-to-joint map)."""
    pts = np.array(points_xy, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(types, dtype=np.int64).reshape(-1).copy()
    pts[:, 0] = image_width - pts[:, 0] - 1
    swap = {}
    for a, b in flip_pairs:
        swap[a], swap[b] = b, a
    out = np.array([swap.get(int(v), int(v)) for v in t], dtype=np.int64)
    return pts, out
