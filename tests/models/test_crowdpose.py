"""models.crowdpose: each rule of CrowdPose's candidate extraction and association on hand-checked cases, equality
with a per-person reference loop written from the spec (shared/specs/poseflow-crowdpose-pgpg-prm.md §2.3–2.4) on
seeded random scenes, the crowd index of the real CrowdPose annotations, and JC-SPPE targets."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from models.crowdpose import (
    ALPHAPOSE_CANDIDATES,
    CandidateParams,
    CrowdAssociationParams,
    JointCandidates,
    crowd_association,
    crowd_index,
    duplicate_oks_matrix,
    flip_interference,
    group_current_candidates,
    interference_joints,
    interference_mask,
    jc_targets,
    joint_candidates,
    joint_candidates_torch,
    paper_association,
    released_association,
    suppress_duplicates,
)
from models.keypoints import COCO_17, CROWDPOSE_14
from models.pose_nms import PoseNMSResult
from models.targets import gaussian_targets
from models.transforms import ALPHAPOSE_CROP, image_to_heatmap_coords

HM = (64, 48)
INP = (256, 192)


# ----------------------------------------------------------------------------------------------------------------
# Reference loops, one person and one joint at a time, from the spec's text
# ----------------------------------------------------------------------------------------------------------------


def ref_candidates(hm: np.ndarray, box, inp=INP) -> list[tuple[float, float, float]]:
    """§2.3 for one heatmap, pixel by pixel (the reflect border of a 5×5 maximum equals the clipped window)."""
    h, w = hm.shape
    peaks = []
    for y, x in zip(*np.nonzero(hm > 0.1)):  # "> 0.1" first: it is a conjunct of the peak test
        y, x = int(y), int(x)
        if hm[y, x] == hm[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].max():
            peaks.append((x, y, float(hm[y, x])))
    peaks.sort(key=lambda p: (-p[2], -p[1], -p[0]))
    if not peaks:
        i = int(np.argmax(hm))
        peaks = [(i % w, i // w, float(hm.reshape(-1)[i]))]
    out = []
    for x, y, v in peaks:
        if v < 0.05 and out:
            continue
        fx, fy = float(x), float(y)
        if 0 < x < w - 2:
            if hm[y, x + 1] > hm[y, x - 1]:
                fx += 0.25
            elif hm[y, x + 1] < hm[y, x - 1]:
                fx -= 0.25
        if 0 < y < h - 2:
            col = int(fx)
            if hm[y + 1, col] > hm[y - 1, col]:
                fy += 0.25 * inp[0] / inp[1]
            elif hm[y + 1, col] < hm[y - 1, col]:
                fy -= 0.25 * inp[0] / inp[1]
        px = box[0] + (fx + 0.2) * (box[2] - box[0]) / w
        py = box[1] + (fy + 0.2) * (box[3] - box[1]) / h
        out.append((px, py, v))
        if v < 0.05:
            break
    return out


def ref_released(boxes, box_scores, lists, sigmas10):
    """§2.4 "Released code" with dicts and loops; lists[n][k] = [(x, y, s), ...] best first. Returns the kept
    persons as (index, keypoints [K, 2], scores [K], pose score)."""
    n_persons, k_joints = len(lists), len(lists[0])
    lists = [[list(c) for c in person] for person in lists]
    h = []
    for n in range(n_persons):
        t = 0.0
        for k in range(k_joints):
            t += lists[n][k][0][2]
        h.append(t / k_joints)
    groups = [[] for _ in range(k_joints)]  # each: dict(center, sx, sy, ss, aw, ah, ah_sum)
    gid = [[None] * k_joints for _ in range(n_persons)]
    for n in range(n_persons):
        w, ht = boxes[n][2] - boxes[n][0], boxes[n][3] - boxes[n][1]
        for k in range(k_joints):
            x0, y0, s0 = lists[n][k][0]
            if s0 < 0.05:
                continue
            for g_i, g in enumerate(groups[k]):
                a = g["aw"] * g["ah"] / g["hs"] ** 2
                d = np.sqrt(((g["c"][0] - x0) ** 2 + (g["c"][1] - y0) ** 2) / a)
                if d <= 0.1 * sigmas10[k]:
                    if s0 >= 0.3:
                        g["sx"] += x0 * s0
                        g["sy"] += y0 * s0
                        g["ss"] += s0
                        g["aw"] += w * h[n]
                        g["ah"] += ht * h[n]
                        g["hs"] += h[n]
                        g["c"] = (g["sx"] / g["ss"], g["sy"] / g["ss"])
                    gid[n][k] = g_i
                    break
            else:
                groups[k].append(dict(c=(x0, y0), sx=x0 * s0, sy=y0 * s0, ss=s0, aw=w * h[n], ah=ht * h[n], hs=h[n]))
                gid[n][k] = len(groups[k]) - 1
    pairs = []
    for k in range(k_joints):
        cost = np.zeros((n_persons, len(groups[k])))
        for n in range(n_persons):
            if gid[n][k] is not None:
                s = lists[n][k][0][2]
                cost[n, gid[n][k]] = 0.0 if s < 0.05 else -(h[n] * s)
        r, c = linear_sum_assignment(cost)
        pairs.append(set(zip(r.tolist(), c.tolist())))
    for n in range(n_persons):
        for k in range(k_joints):
            g = gid[n][k]
            if g is None:
                continue
            if (n, g) in pairs[k]:
                lists[n][k][0] = (*groups[k][g]["c"], lists[n][k][0][2])
            elif len(lists[n][k]) > 1:
                lists[n][k].pop(0)
            else:
                lists[n][k][0] = (lists[n][k][0][0], lists[n][k][0][1], 1e-5)
    return ref_output(box_scores, [[lists[n][k][0] for k in range(k_joints)] for n in range(n_persons)])


def ref_output(box_scores, current, offset=0.3):
    """The output filter and score (§2.4 step 5); current[n][k] = (x, y, s); ``offset``: the released −0.3 (the
    paper mode has none)."""
    out = []
    for n, joints in enumerate(current):
        xmax, xmin, ymax, ymin, mean, best = 0.0, 1e5, 0.0, 1e5, 0.0, 0.0
        kps, sc = [], []
        for x, y, s in joints:
            xmax, xmin, ymax, ymin = max(xmax, x), min(xmin, x), max(ymax, y), min(ymin, y)
            kps.append((x - offset, y - offset))
            sc.append(s)
            mean += s / len(joints)
            best = max(best, s)
        if max(sc) < 0.1 or 1.5**2 * (xmax - xmin) * (ymax - ymin) < 40 * 40:
            continue
        out.append((n, np.array(kps), np.array(sc), mean + best + box_scores[n]))
    return out


def ref_max_matching(n_persons: int, weights: list[dict]) -> tuple:
    """Maximum-weight matching persons → nodes (weights[g][n] > 0 are the edges) by dynamic programming over the
    set of taken nodes: each person's node index, or None."""
    memo: dict = {}

    def best_from(p: int, used: int) -> tuple[float, tuple]:
        if p == n_persons:
            return 0.0, ()
        if (p, used) not in memo:
            options = [(best_from(p + 1, used)[0], None)]
            for g, edges in enumerate(weights):
                if not used >> g & 1 and p in edges:
                    options.append((edges[p] + best_from(p + 1, used | 1 << g)[0], g))
            total, g = max(options, key=lambda o: o[0])
            memo[(p, used)] = (total, (g,) + best_from(p + 1, used if g is None else used | 1 << g)[1])
        return memo[(p, used)]

    return best_from(0, 0)[1]


def ref_paper(boxes, box_scores, lists, sigmas10, top_first=True):
    """The paper mode as ``paper_association`` documents it, with loops, and the maximum-weight matching of each
    joint type found by exhaustive dynamic programming over node subsets (not by the Hungarian algorithm); with
    ``top_first`` in two rounds: each person's edge to its own top candidate's node alone, then every edge between
    the persons and nodes left unmatched."""
    n_persons, k_joints = len(lists), len(lists[0])
    h = [sum(lists[n][k][0][2] for k in range(k_joints)) / k_joints for n in range(n_persons)]
    conf = [h[n] * box_scores[n] for n in range(n_persons)]
    current = [[(lists[n][k][0][0], lists[n][k][0][1], 1e-5) for k in range(k_joints)] for n in range(n_persons)]
    for k in range(k_joints):
        cands = [(-c[2], n, i, c) for n in range(n_persons) for i, c in enumerate(lists[n][k]) if c[2] >= 0.05]
        nodes = []
        top = {}  # person -> the node its top candidate joined
        for _, n, i, (x, y, s) in sorted(cands):
            w, ht = boxes[n][2] - boxes[n][0], boxes[n][3] - boxes[n][1]
            for nd in nodes:
                a = nd["aw"] * nd["ah"] / nd["hs"] ** 2
                if np.sqrt(((nd["sx"] / nd["ss"] - x) ** 2 + (nd["sy"] / nd["ss"] - y) ** 2) / a) <= 0.1 * sigmas10[k]:
                    break
            else:
                nd = dict(sx=0.0, sy=0.0, ss=0.0, aw=0.0, ah=0.0, hs=0.0, best={})
                nodes.append(nd)
            nd["sx"] += x * s
            nd["sy"] += y * s
            nd["ss"] += s
            nd["aw"] += w * h[n]
            nd["ah"] += ht * h[n]
            nd["hs"] += h[n]
            nd["best"][n] = max(nd["best"].get(n, 0.0), s)
            if i == 0:
                top[n] = nodes.index(nd)
        weights = [{n: conf[n] * b for n, b in nd["best"].items()} for nd in nodes]
        if top_first:
            own = [{n: w for n, w in edges.items() if top.get(n) == g} for g, edges in enumerate(weights)]
            match = list(ref_max_matching(n_persons, own))
            taken = set(match) - {None}
            rest = [
                {} if g in taken else {n: w for n, w in e.items() if match[n] is None} for g, e in enumerate(weights)
            ]
            for n, g in enumerate(ref_max_matching(n_persons, rest)):
                if g is not None:
                    match[n] = g
        else:
            match = ref_max_matching(n_persons, weights)
        for n, g in enumerate(match):
            if g is not None:
                nd = nodes[g]
                current[n][k] = (nd["sx"] / nd["ss"], nd["sy"] / nd["ss"], nd["best"][n])
    return ref_output(box_scores, current, offset=0.0)


def to_lists(c: JointCandidates):
    return [
        [[tuple(c.xy[n, k, i]) + (c.scores[n, k, i],) for i in range(c.count[n, k])] for k in range(c.num_joints)]
        for n in range(c.num_persons)
    ]


def candidates_from(lists, m=4) -> JointCandidates:
    n, k = len(lists), len(lists[0])
    xy, s, v = np.zeros((n, k, m, 2)), np.zeros((n, k, m)), np.zeros((n, k, m), bool)
    cnt = np.zeros((n, k), np.int64)
    for i in range(n):
        for j in range(k):
            cnt[i, j] = len(lists[i][j])
            for t, (x, y, sc) in enumerate(lists[i][j][:m]):
                xy[i, j, t], s[i, j, t], v[i, j, t] = (x, y), sc, True
    return JointCandidates(xy=xy, scores=s, valid=v, count=cnt)


def random_scene(rng: np.random.Generator, n_people: int, n_props: int, k: int, img=(640, 480)):
    """Overlapping people, proposals jittered from their boxes (some duplicated), and JC-style heatmaps: target
    peaks of random height, attenuated peaks at other people's joints inside the crop, and a noise floor."""
    centers = rng.uniform([150, 150], [img[0] - 150, img[1] - 150], (n_people, 2))
    size = rng.uniform(80, 160, (n_people, 1))
    kps = centers[:, None, :] + rng.uniform(-0.5, 0.5, (n_people, k, 2)) * size[:, None, :] * np.array([0.6, 1.2])
    owner = np.concatenate([np.arange(n_people), rng.integers(0, n_people, n_props - n_people)])
    lo, hi = kps[owner].min(1), kps[owner].max(1)
    boxes = np.concatenate([lo, hi], 1) + rng.normal(0, 8, (n_props, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 10)
    crops = ALPHAPOSE_CROP.crop_boxes(boxes)
    ys, xs = np.arange(HM[0], dtype=np.float32), np.arange(HM[1], dtype=np.float32)
    maps = np.zeros((n_props, k, *HM), np.float32)
    for i in range(n_props):
        c = image_to_heatmap_coords(kps, np.repeat(crops[i : i + 1], n_people, 0)).astype(np.float32)  # [P, K, 2]
        amp = np.where(np.arange(n_people)[:, None] == owner[i], rng.uniform(0.2, 1.0, (n_people, k)), 0.0)
        amp = np.where(amp == 0, rng.uniform(0.0, 0.7, (n_people, k)), amp).astype(np.float32)
        gx = np.exp(-((xs - c[..., 0:1]) ** 2) / 8)  # [P, K, W]
        gy = np.exp(-((ys - c[..., 1:2]) ** 2) / 8)  # [P, K, H]
        maps[i] = (amp[..., None, None] * gy[..., :, None] * gx[..., None, :]).max(0)
    hm = maps + rng.random(maps.shape, dtype=np.float32) * np.float32(0.06)
    # Some low-response maps (no peak > 0.1) and exact plateaus.
    hm[0, 0] *= np.float32(0.09)
    hm[0, 1] = 0.02
    hm[-1, 2, 30, 20:22] = 2.0
    return boxes, rng.uniform(0.3, 1.0, n_props), crops, hm


# ----------------------------------------------------------------------------------------------------------------
# §2.3 joint candidates
# ----------------------------------------------------------------------------------------------------------------


def _one(hm2d: np.ndarray, box=(0.0, 0.0, 48.0, 64.0), **kw) -> JointCandidates:
    return joint_candidates(hm2d[None, None].astype(np.float32), np.array([box]), **kw)


def test_peaks_5x5_filter_threshold_and_order() -> None:
    hm = np.zeros(HM)
    hm[10, 10] = 0.9
    hm[10, 12] = 0.5  # 2 columns from a larger value: inside its 5×5 window, not a peak
    hm[10, 13] = 0.4  # next to the 0.5: not a peak either
    hm[30, 30] = 0.3
    hm[50, 5] = 0.1  # not > 0.1
    hm[40, 40] = 0.6
    c = _one(hm, params=CandidateParams(offset=0.0, max_candidates=8))
    assert c.count[0, 0] == 3
    np.testing.assert_allclose(c.scores[0, 0, :3], [0.9, 0.6, 0.3], rtol=1e-6)
    assert c.valid[0, 0].tolist() == [True, True, True, False, False, False, False, False]


def test_tie_order_rows_then_columns_descending() -> None:
    hm = np.zeros(HM)
    hm[20, 20] = hm[20, 21] = 0.5  # a plateau: both equal their window maximum
    hm[40, 10] = 0.5
    c = _one(hm, params=CandidateParams(offset=0.0))
    # Equal values: row 40 first, then row 20 column 21, then column 20 (AlphaPose's lexsort of −(x, y, v)).
    assert c.count[0, 0] == 3
    xs, ys = c.xy[0, 0, :3, 0], c.xy[0, 0, :3, 1]
    assert ys[0] == pytest.approx(40) and ys[1] == pytest.approx(20) and ys[2] == pytest.approx(20)
    assert xs[1] > xs[2]


@pytest.mark.parametrize("value", [0.08, 0.03, -0.2])
def test_no_peak_gives_the_argmax_alone(value: float) -> None:
    hm = np.full(HM, -0.5)
    hm[33, 17] = value
    hm[34, 30] = value  # the same value later in row-major order: argmax takes the first
    c = _one(hm, params=CandidateParams(offset=0.0))
    assert c.count[0, 0] == 1 and c.valid[0, 0].tolist() == [True, False, False, False]
    assert c.scores[0, 0, 0] == pytest.approx(value)
    # (17, 33): column 16 < column 18 is −0.5 = −0.5, no horizontal move; rows equal too.
    np.testing.assert_allclose(c.xy[0, 0, 0], [17, 33])


def test_low_candidates_skipped_unless_first() -> None:
    # With a peak threshold below the low threshold, the walk rule is visible: 0.04 is dropped after a 0.5.
    hm = np.zeros(HM)
    hm[10, 10], hm[30, 30], hm[50, 40] = 0.5, 0.04, 0.03
    c = _one(hm, params=CandidateParams(peak_threshold=0.0, offset=0.0))
    assert c.count[0, 0] == 1
    hm[10, 10] = 0.045
    c = _one(hm, params=CandidateParams(peak_threshold=0.0, offset=0.0))
    assert c.count[0, 0] == 1 and c.scores[0, 0, 0] == pytest.approx(0.045)


def test_quarter_pixel_refinement_and_its_column_quirk() -> None:
    hm = np.zeros(HM)
    y, x = 20, 10
    hm[y, x] = 1.0
    hm[y, x - 1] = 0.6  # left larger than right (0): x − 0.25 → int(x) = 9
    # column 9 says "down" (row 21 > row 19); column 10 says "up": the quirk reads column 9
    hm[y + 1, x - 1], hm[y - 1, x - 1] = 0.3, 0.1
    hm[y - 1, x], hm[y + 1, x] = 0.5, 0.2
    c = _one(hm, params=CandidateParams(offset=0.0))
    np.testing.assert_allclose(c.xy[0, 0, 0], [x - 0.25, y + 0.25 * 256 / 192])
    # The aspect factor follows the SPPE input.
    c = _one(hm, params=CandidateParams(offset=0.0), input_size_hw=(320, 256))
    np.testing.assert_allclose(c.xy[0, 0, 0], [x - 0.25, y + 0.25 * 320 / 256])


@pytest.mark.parametrize("x", [0, 46, 47])
def test_no_horizontal_refinement_at_borders(x: int) -> None:
    hm = np.zeros(HM)
    hm[20, x] = 1.0
    hm[20, min(x + 1, 47)] = 0.5 if x < 47 else 1.0
    c = _one(hm, params=CandidateParams(offset=0.0))
    assert c.xy[0, 0, 0, 0] == pytest.approx(float(x))


def test_offset_and_back_projection_through_the_crop_box() -> None:
    hm = np.zeros(HM)
    hm[12, 30] = 1.0
    box = (100.0, 200.0, 196.0, 328.0)  # 2 image px per heatmap px
    c = _one(hm, box)
    np.testing.assert_allclose(c.xy[0, 0, 0], [100 + 30.2 * 2, 200 + 12.2 * 2])


def test_paper_mode_reads_candidates_without_the_released_offsets() -> None:
    """``candidate_params_for``: the released association keeps AlphaPose's +0.2 (and −0.3 on output); the paper mode
    extracts candidates at the decoded peak and outputs them unshifted."""
    from models.crowdpose import candidate_params_for

    assert candidate_params_for("released") is ALPHAPOSE_CANDIDATES
    custom = CandidateParams(max_candidates=7)
    assert candidate_params_for("paper", custom) == CandidateParams(max_candidates=7, offset=0.0)
    hm = np.zeros(HM)
    hm[12, 30] = 1.0
    box = (100.0, 200.0, 196.0, 328.0)  # 2 image px per heatmap px
    np.testing.assert_allclose(_one(hm, box, params=candidate_params_for("paper")).xy[0, 0, 0], [160.0, 224.0])


def test_candidates_equal_reference_loop_on_random_scenes() -> None:
    rng = np.random.default_rng(17)
    for trial in range(3):
        boxes, _, crops, hm = random_scene(rng, 4, 6, 14)
        c = joint_candidates(hm, crops, params=CandidateParams(max_candidates=3))
        torch_c = joint_candidates(torch.from_numpy(hm), crops, params=CandidateParams(max_candidates=3))
        np.testing.assert_array_equal(c.xy, torch_c.xy)
        for n in range(len(boxes)):
            for k in range(14):
                ref = ref_candidates(hm[n, k], crops[n])
                assert c.count[n, k] == len(ref), (trial, n, k)
                got = [(*c.xy[n, k, i], c.scores[n, k, i]) for i in range(min(3, len(ref)))]
                np.testing.assert_allclose(got, ref[:3], rtol=0, atol=1e-9)
                assert c.valid[n, k].sum() == min(3, len(ref))


@pytest.mark.parametrize("window", [1, 3, 5, 7])
def test_max_filter_equals_scipy_reflect(window: int) -> None:
    from scipy.ndimage import maximum_filter

    from models.crowdpose import _max_filter

    hm = np.random.default_rng(window).random((2, 3, 64, 48)).astype(np.float32)
    hm[0, 0, :3, :3] = 5.0  # a corner maximum: the border rule matters
    want = maximum_filter(hm, size=(1, 1, window, window), mode="reflect")
    np.testing.assert_array_equal(_max_filter(hm, window), want)


def test_empty_input() -> None:
    c = joint_candidates(np.zeros((0, 17, *HM), np.float32), np.zeros((0, 4)))
    assert c.xy.shape == (0, 17, 4, 2)
    r = released_association(np.zeros((0, 4)), np.zeros(0), c)
    assert len(r) == 0 and r.keypoints.shape == (0, 17, 2)
    assert len(paper_association(np.zeros((0, 4)), np.zeros(0), c)) == 0


# ----------------------------------------------------------------------------------------------------------------
# §2.3 on the heatmaps' device: joint_candidates_torch equals joint_candidates
# ----------------------------------------------------------------------------------------------------------------

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def _assert_torch_equals_numpy(hm: np.ndarray, boxes, device: str, **kw) -> JointCandidates:
    """Both versions on the same maps: equal arrays, dtypes and shapes (coordinates bit for bit: both project on the
    host through ``_candidates_in_image``)."""
    want = joint_candidates(hm, boxes, **kw)
    got = joint_candidates_torch(torch.from_numpy(hm).to(device), boxes, **kw)
    for field in ("xy", "scores", "valid", "count"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), field
        np.testing.assert_array_equal(a, b, err_msg=field)
    return want


def _gauss(cx: float, cy: float, amp: float = 1.0, var: float = 2.0) -> np.ndarray:
    ys, xs = np.mgrid[0 : HM[0], 0 : HM[1]]
    return amp * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * var))


def _edge_maps() -> dict[str, tuple[np.ndarray, CandidateParams]]:
    """Hand-made [K, H, W] stacks, each with the params that exercise it."""
    low = np.float32(0.05)
    cases: dict[str, tuple[list[np.ndarray], CandidateParams]] = {}
    # exact ties: Gaussians centred between pixels (2×2, 1×2 and 2×1 plateaus of equal peaks), equal peaks in
    # different rows and columns, a constant map (every pixel a peak) and equal constant blocks
    between = [
        np.maximum(_gauss(10.5, 20.5), _gauss(30.5, 40.0)),
        np.maximum.reduce([_gauss(5.0, 50.5, 0.7), _gauss(40.0, 10.5, 0.7), _gauss(20.5, 30.0, 0.7)]),
        np.full(HM, 0.5),
        np.zeros(HM),
    ]
    between[3][5:11, 5:11] = between[3][30:36, 20:26] = between[3][58:, 42:] = 0.7
    cases["plateaus_and_ties"] = (between, CandidateParams(max_candidates=6))
    # no peak above the threshold: the first row-major argmax alone, whatever its value
    flat = [np.full(HM, -0.5), np.full(HM, np.float32(0.1)), np.full(HM, 0.02), np.zeros(HM)]
    flat[0][33, 17] = flat[0][34, 30] = 0.08  # tie: the first in row-major order
    flat[2][60, 40] = 0.09
    cases["no_peak_argmax"] = (flat, CandidateParams())
    # peaks at the borders: the reflect border of the maximum, the W − 2 / H − 2 limits and the refined column
    borders = []
    for x, y in [(0, 0), (47, 63), (46, 20), (45, 20), (1, 20), (20, 62), (20, 61), (20, 1), (0, 63), (47, 0)]:
        m = np.zeros(HM)
        m[y, x] = 1.0
        for dy, dx, v in [(0, 1, 0.6), (0, -1, 0.3), (1, 0, 0.2), (-1, 0, 0.4), (1, -1, 0.5), (-1, -1, 0.1)]:
            if 0 <= y + dy < HM[0] and 0 <= x + dx < HM[1]:
                m[y + dy, x + dx] = v
        borders.append(m)
    cases["borders"] = (borders, CandidateParams(max_candidates=2))
    # more peaks than M: a grid of random peaks, with ties among them
    rng = np.random.default_rng(0)
    grid = []
    for _ in range(3):
        m = np.zeros(HM)
        m[2::5, 2::5] = np.round(rng.uniform(0.0, 1.0, m[2::5, 2::5].shape), 1)
        grid.append(m)
    cases["more_peaks_than_m"] = (grid, CandidateParams(max_candidates=5))
    # values below low_threshold: skipped unless first, and a first one ends the walk; exact-threshold values
    lows = [np.zeros(HM) for _ in range(4)]
    lows[0][10, 10], lows[0][30, 30], lows[0][50, 40] = 0.5, 0.04, 0.03
    lows[1][10, 10], lows[1][30, 30], lows[1][50, 40] = 0.045, 0.04, 0.03
    lows[2][10, 10], lows[2][30, 30], lows[2][50, 40] = low, low, np.float32(0.1)
    lows[3][:] = -0.0
    lows[3][::2] = 0.0  # signed zeros tie: +0.0 == −0.0
    cases["low_threshold"] = (lows, CandidateParams(peak_threshold=-1.0, max_candidates=8))
    return {name: (np.stack(maps).astype(np.float32), p) for name, (maps, p) in cases.items()}


EDGE_CASES = sorted(_edge_maps())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", EDGE_CASES)
def test_torch_candidates_equal_numpy_on_edge_cases(case: str, device: str) -> None:
    maps, params = _edge_maps()[case]
    hm = np.stack([maps, maps[::-1]])  # two persons
    boxes = np.array([[10.0, 20.0, 106.0, 148.0], [-5.0, 3.5, 43.0, 67.5]])
    variants = (
        params,
        dataclasses.replace(params, offset=0.0),
        dataclasses.replace(params, max_candidates=1),
        dataclasses.replace(params, low_threshold=-1.0, max_candidates=12),  # every peak kept: ties all along
    )
    for p in variants:
        c = _assert_torch_equals_numpy(hm, boxes, device, params=p)
        _assert_torch_equals_numpy(hm, boxes, device, params=p, input_size_hw=(320, 256))
        _assert_torch_equals_numpy(hm.astype(np.float64), boxes, device, params=p)
    assert c.valid[:, :, 0].all()


def test_edge_cases_cover_ties_fallbacks_and_lows() -> None:
    """The edge cases exercise what they are named after (checked through the NumPy version, which the reference
    loop checks): plateau ties, the argmax fallback, more peaks than M, the low threshold and signed-zero ties."""
    maps = _edge_maps()
    c = joint_candidates(*_stack(maps["plateaus_and_ties"][0]), params=maps["plateaus_and_ties"][1])
    assert c.count[0].tolist() == [6, 6, HM[0] * HM[1], 108]
    assert (c.scores[0, :, 1] == c.scores[0, :, 0]).all()  # every map starts with a tie
    c = joint_candidates(*_stack(maps["no_peak_argmax"][0]))
    assert (c.count == 1).all() and c.scores[0, 0, 0] == np.float32(0.08)
    np.testing.assert_allclose(c.xy[0, :, 0], [[34.4, 66.4], [0.4, 0.4], [80.4, 120.4], [0.4, 0.4]])
    c = joint_candidates(*_stack(maps["more_peaks_than_m"][0]), params=maps["more_peaks_than_m"][1])
    assert (c.count > 5).all() and c.valid.all()
    low = maps["low_threshold"][1]
    c = joint_candidates(*_stack(maps["low_threshold"][0]), params=low)
    assert c.count[0].tolist() == [1, 1, 3, 1]
    np.testing.assert_allclose(c.xy[0, 3, 0], [94.4, 126.4])  # ±0 tie: the last pixel first
    c = joint_candidates(*_stack(maps["low_threshold"][0]), params=dataclasses.replace(low, low_threshold=-1.0))
    assert c.count[0, 3] == HM[0] * HM[1]


def _stack(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return maps[None], np.array([[0.0, 0.0, 2.0 * HM[1], 2.0 * HM[0]]])


@pytest.mark.parametrize("device", DEVICES)
def test_torch_candidates_equal_numpy_on_random_scenes(device: str) -> None:
    rng = np.random.default_rng(23)
    for trial in range(4):
        _, _, crops, hm = random_scene(rng, 4, 7, (14, 17)[trial % 2])
        for m in (1, 2, 4, 9):
            _assert_torch_equals_numpy(hm, crops, device, params=CandidateParams(max_candidates=m))
        _assert_torch_equals_numpy(hm, crops, device, params=CandidateParams(peak_threshold=0.0, window=3))
        # negative values, every local maximum a peak: the border of the maximum filter matters
        shifted = hm - np.float32(0.5)
        _assert_torch_equals_numpy(
            shifted, crops, device, params=CandidateParams(peak_threshold=-1.0, low_threshold=-0.4)
        )
        # quantized maps: many exact ties and plateaus
        q = (np.round(hm * 10) / 10).astype(np.float32)
        _assert_torch_equals_numpy(q, crops, device, params=CandidateParams(max_candidates=6))
    # small maps (H, W < window; M > H·W) and random noise
    noise = rng.random((3, 5, 3, 4), dtype=np.float32)
    _assert_torch_equals_numpy(noise, rng.uniform(0, 50, (3, 4)), device, params=CandidateParams(max_candidates=20))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_candidates_of_no_persons(device: str) -> None:
    c = _assert_torch_equals_numpy(np.zeros((0, 17, *HM), np.float32), np.zeros((0, 4)), device)
    assert c.xy.shape == (0, 17, 4, 2) and c.count.shape == (0, 17)


def test_torch_candidates_validate_their_inputs() -> None:
    with pytest.raises(ValueError, match=r"must be \[N, K, H, W\]"):
        joint_candidates_torch(torch.zeros(17, *HM), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="2 crop boxes for 1"):
        joint_candidates_torch(torch.zeros(1, 17, *HM), np.zeros((2, 4)))
    # integer maps are cast to float32, as the NumPy version does
    hm = np.zeros((1, 2, *HM), np.int64)
    hm[0, :, 10, 20] = 3
    _assert_torch_equals_numpy(hm, np.array([[0.0, 0.0, 48.0, 64.0]]), "cpu")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("window", [1, 3, 5, 7])
def test_torch_max_filter_equals_scipy_reflect(window: int, device: str) -> None:
    from scipy.ndimage import maximum_filter

    from models.crowdpose import _max_filter_torch

    rng = np.random.default_rng(window)
    for shape in ((6, 64, 48), (4, 3, 2)):
        hm = rng.random(shape).astype(np.float32) - np.float32(1.0)  # all negative: a 0 border would show
        hm[0, :3, :2] = 5.0  # a corner maximum: the border rule matters
        want = maximum_filter(hm, size=(1, window, window), mode="reflect")
        np.testing.assert_array_equal(_max_filter_torch(torch.from_numpy(hm).to(device), window).cpu().numpy(), want)


# ----------------------------------------------------------------------------------------------------------------
# §2.4 association
# ----------------------------------------------------------------------------------------------------------------

K = 14  # CrowdPose-14: σ_0 = 0.79 (left shoulder), released scale ×10


def _pose(x0: float, y0: float, s: float = 0.9) -> list:
    """A spread-out pose (so the extent filter passes): joint j at (x0 + 10 j, y0 + 12 j)."""
    return [[(x0 + 10 * j, y0 + 12 * j, s)] for j in range(K)]


def test_shared_joint_goes_to_the_stronger_person_and_the_other_falls_back() -> None:
    a, b = _pose(100, 100, 0.9), _pose(300, 100, 0.6)
    b[0] = [(100.0, 100.0, 0.8), (305.0, 98.0, 0.5)]  # b's best left shoulder is a's; its second is its own
    boxes = np.array([[80, 80, 260, 300], [280, 80, 460, 300.0]])
    r = released_association(boxes, np.array([0.9, 0.8]), candidates_from([a, b]))
    assert r.kept.tolist() == [0, 1]
    np.testing.assert_allclose(r.keypoints[0, 0], [100 - 0.3, 100 - 0.3])
    np.testing.assert_allclose(r.keypoints[1, 0], [305 - 0.3, 98 - 0.3])
    assert r.keypoint_scores[1, 0] == pytest.approx(0.5)
    assert r.keypoint_scores[0, 0] == pytest.approx(0.9)


def test_loser_with_one_candidate_gets_1e5() -> None:
    a, b = _pose(100, 100, 0.9), _pose(300, 100, 0.6)
    b[0] = [(100.0, 100.0, 0.8)]
    r = released_association(np.array([[80, 80, 260, 300], [280, 80, 460, 300.0]]), np.ones(2), candidates_from([a, b]))
    assert r.keypoint_scores[1, 0] == pytest.approx(1e-5)
    np.testing.assert_allclose(r.keypoints[1, 0], [99.7, 99.7])


def test_group_radius_is_point_one_sigma_on_the_h_weighted_box_scale() -> None:
    # One person per proposal, box 100×100, h = 1 → a = 100·100, radius = 0.1·7.9·100/100... = 0.79·10 px.
    def two(dx: float):
        a = [[(50.0 + 10 * j, 50.0, 1.0)] for j in range(K)]
        b = [[(50.0 + 10 * j + (dx if j == 0 else 300), 50.0, 1.0)] for j in range(K)]
        boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 100.0]])
        return group_current_candidates(boxes, candidates_from([a, b]))

    assert two(7.89).group_id[:, 0].tolist() == [0, 0]
    assert two(7.91).group_id[:, 0].tolist() == [0, 1]
    # COCO-17: nose σ = 0.26 → radius 2.6 px on the same scale.
    a = [[(50.0, 50.0, 1.0)] for _ in range(17)]
    b = [[(52.5, 50.0, 1.0)] for _ in range(17)]
    g = group_current_candidates(np.array([[0, 0, 100, 100]] * 2, float), candidates_from([a, b]))
    assert g.group_id[:, 0].tolist() == [0, 0]  # nose: 2.5 <= 2.6
    assert g.group_id[:, 11].tolist() == [0, 0]  # hip: 10.7 px
    assert COCO_17.sigmas[0] * 10 == pytest.approx(0.26)


def test_group_centre_moves_only_for_scores_from_point_three() -> None:
    a = [[(50.0, 50.0, 0.5)] for _ in range(K)]
    b = [[(52.0, 50.0, 0.25)] for _ in range(K)]  # joins, does not move the centre
    c = [[(54.0, 50.0, 0.5)] for _ in range(K)]  # 4 px from the centre: joins (radius 7.9·h-scale) and moves it
    boxes = np.array([[0, 0, 200, 200]] * 3, float)
    g = group_current_candidates(boxes, candidates_from([a, b]))
    np.testing.assert_allclose(g.centers[0, 0], [50, 50])
    g = group_current_candidates(boxes, candidates_from([a, b, c]))
    assert g.group_id[:, 0].tolist() == [0, 0, 0]
    np.testing.assert_allclose(g.centers[0, 0], [52, 50])


def test_low_current_candidate_joins_nothing_and_stays() -> None:
    a = _pose(100, 100, 0.9)
    a[3] = [(10.0, 10.0, 0.04), (200.0, 200.0, 0.03)]
    g = group_current_candidates(np.array([[80, 80, 260, 300.0]]), candidates_from([a]))
    assert g.group_id[0, 3] == -1
    r = released_association(np.array([[80, 80, 260, 300.0]]), np.ones(1), candidates_from([a]))
    np.testing.assert_allclose(r.keypoints[0, 3], [9.7, 9.7])
    assert r.keypoint_scores[0, 3] == pytest.approx(0.04)


def test_output_filter_and_score() -> None:
    weak = _pose(100, 100, 0.09)  # max score < 0.1: dropped
    tiny = [[(500.0 + j, 100.0 + j, 0.9)] for j in range(K)]  # 1.5²·13·13 < 40²: dropped
    good = _pose(300, 300, 0.5)
    boxes = np.array([[80, 80, 260, 300], [490, 90, 520, 120], [280, 280, 460, 500.0]])
    r = released_association(boxes, np.array([0.9, 0.9, 0.7]), candidates_from([weak, tiny, good]))
    assert isinstance(r, PoseNMSResult)
    assert r.kept.tolist() == [2]
    assert r.pose_scores[0] == pytest.approx(0.5 + 0.5 + 0.7)
    np.testing.assert_array_equal(r.boxes_xyxy[0], boxes[2])
    assert [m.tolist() for m in r.merged_indices] == [[2]]


def test_released_equals_reference_loop_on_random_scenes() -> None:
    rng = np.random.default_rng(5)
    for k, sigmas10 in ((14, CROWDPOSE_14.sigmas_array() * 10), (17, COCO_17.sigmas_array() * 10)):
        for trial in range(4):
            boxes, scores, crops, hm = random_scene(rng, 5, 8, k)
            cands = joint_candidates(hm, crops, params=CandidateParams(max_candidates=2))
            full = joint_candidates(hm, crops, params=CandidateParams(max_candidates=64))
            assert (full.count <= 64).all()
            ref = ref_released(boxes, scores, to_lists(full), sigmas10)
            got = released_association(boxes, scores, cands)
            assert got.kept.tolist() == [n for n, *_ in ref], (k, trial)
            for i, (_, kps, sc, ps) in enumerate(ref):
                np.testing.assert_allclose(got.keypoints[i], kps, rtol=0, atol=1e-9)
                np.testing.assert_allclose(got.keypoint_scores[i], sc, rtol=0, atol=1e-12)
                assert got.pose_scores[i] == pytest.approx(ps, abs=1e-12)
            # The scenes exercise the matching: many groups have several members (losers fall back).
            g = group_current_candidates(boxes, cands)
            assert sum((np.bincount(g.group_id[:, j][g.group_id[:, j] >= 0]) > 1).sum() for j in range(k)) > 10


@pytest.mark.parametrize("top_first", [True, False])
def test_paper_equals_reference_loop_on_random_scenes(top_first: bool) -> None:
    rng = np.random.default_rng(11)
    sig = CROWDPOSE_14.sigmas_array() * 10
    params = CrowdAssociationParams(method="paper", top_candidate_first=top_first)
    for trial in range(4):
        boxes, scores, crops, hm = random_scene(rng, 3, 5, 14)
        cands = joint_candidates(hm, crops, params=CandidateParams(max_candidates=64))
        ref = ref_paper(boxes, scores, to_lists(cands), sig, top_first=top_first)
        got = paper_association(boxes, scores, cands, params=params)
        assert got.kept.tolist() == [n for n, *_ in ref], trial
        for i, (_, kps, sc, ps) in enumerate(ref):
            np.testing.assert_allclose(got.keypoints[i], kps, rtol=0, atol=1e-9)
            np.testing.assert_allclose(got.keypoint_scores[i], sc, rtol=0, atol=1e-12)
            assert got.pose_scores[i] == pytest.approx(ps, abs=1e-12)


def test_paper_mode_gives_each_node_to_one_person() -> None:
    a, b = _pose(100, 100, 0.9), _pose(300, 100, 0.6)
    b[0] = [(100.0, 100.0, 0.8), (305.0, 98.0, 0.5)]
    boxes = np.array([[80, 80, 260, 300], [280, 80, 460, 300.0]])
    r = paper_association(boxes, np.array([0.9, 0.8]), candidates_from([a, b]))
    np.testing.assert_allclose(r.keypoints[1, 0], [305.0, 98.0])  # no released −0.3 in the paper mode
    assert r.keypoint_scores[1, 0] == pytest.approx(0.5)
    # Two proposals on one person: the duplicate loses every node and drops out (max score 1e-5 < 0.1).
    r = paper_association(np.array([[80, 80, 260, 300]] * 2, float), np.array([0.9, 0.5]), candidates_from([a, a]))
    assert r.kept.tolist() == [0]
    same = crowd_association(boxes, np.array([0.9, 0.8]), candidates_from([a, b]), params=CrowdAssociationParams())
    np.testing.assert_allclose(same.keypoints[1, 0], [304.7, 97.7])


def test_paper_mode_keeps_a_persons_top_joint_from_its_duplicate_proposal() -> None:
    """Two proposals of one person share its joint nodes; the person's proposal also has a weak candidate B far off
    that the duplicate lacks. One matching on the sum gives the person's left shoulder to the duplicate and B to
    the person (0.81·0.3 + 0.72·0.95 > 0.81·0.9); the top-candidate round keeps the shoulder with the person."""
    p = _pose(100, 100, 0.9)
    p[0] = [(100.0, 100.0, 0.9), (400.0, 300.0, 0.3)]
    d = _pose(100, 100, 0.9)
    d[0] = [(100.0, 100.0, 0.95)]
    boxes = np.array([[80, 80, 260, 300], [82, 78, 262, 298.0]])
    scores = np.array([0.9, 0.8])
    cands = candidates_from([p, d])
    r = paper_association(boxes, scores, cands)
    assert r.kept.tolist() == [0]  # the duplicate wins no node and drops out (max score 1e-5 < 0.1)
    np.testing.assert_allclose(r.keypoints[0, 0], [100.0, 100.0])
    assert r.keypoint_scores[0, 0] == pytest.approx(0.9)
    single = paper_association(
        boxes, scores, cands, params=CrowdAssociationParams(method="paper", top_candidate_first=False)
    )
    assert single.kept.tolist() == [0, 1]
    np.testing.assert_allclose(single.keypoints[0, 0], [400.0, 300.0])  # the swap
    np.testing.assert_allclose(single.keypoints[1, 0], [100.0, 100.0])
    assert single.keypoint_scores[1, 0] == pytest.approx(0.95)


# ----------------------------------------------------------------------------------------------------------------
# raypose's optional duplicate filter on the association's output (not AlphaPose's)
# ----------------------------------------------------------------------------------------------------------------


def _persons(kps, scores, pose_scores, kept=None) -> PoseNMSResult:
    kps, scores, pose_scores = (np.asarray(a, np.float64) for a in (kps, scores, pose_scores))
    n = len(kps)
    kept = np.arange(n, dtype=np.int64) if kept is None else np.asarray(kept, np.int64)
    boxes = np.concatenate([kps.min(1), kps.max(1)], 1)
    return PoseNMSResult(
        kept=kept,
        keypoints=kps,
        keypoint_scores=scores,
        pose_scores=pose_scores,
        boxes_xyxy=boxes,
        box_scores=pose_scores / 3,
        merged_indices=tuple(np.array([i], np.int64) for i in kept.tolist()),
    )


def ref_suppress(kps, scores, pose_scores, sigmas, threshold, joint_score=0.05) -> list[int]:
    """The filter one pair and one joint at a time: OKS of j against the kept i, scale = i's confident-joint box."""
    n, k = scores.shape
    alive = [True] * n
    kept = []
    for i in sorted(range(n), key=lambda t: (-pose_scores[t], t)):
        if not alive[i]:
            continue
        kept.append(i)
        own = [t for t in range(k) if scores[i, t] > joint_score]
        area = 0.0
        if len(own) >= 2:
            xs, ys = [kps[i, t, 0] for t in own], [kps[i, t, 1] for t in own]
            area = (max(xs) - min(xs)) * (max(ys) - min(ys))
        for j in range(n):
            if j == i or not alive[j]:
                continue
            terms = []
            for t in range(k):
                if scores[i, t] > joint_score and scores[j, t] > joint_score:
                    d2 = (kps[i, t, 0] - kps[j, t, 0]) ** 2 + (kps[i, t, 1] - kps[j, t, 1]) ** 2
                    terms.append(math.exp(-d2 / (2 * (2 * sigmas[t]) ** 2 * (area + np.spacing(1)))))
            if terms and sum(terms) / len(terms) >= threshold:
                alive[j] = False
    return sorted(kept)


def test_duplicate_oks_by_hand_scale_and_joint_mask() -> None:
    # Two joints, σ = 0.1: the kept person's joints span 10×10 px → area 100; a 2 px shift gives
    # exp(−4 / (2·100·0.2²)) = exp(−0.5) = 0.6065 on each joint.
    a = [[0.0, 0.0], [10.0, 10.0]]
    b = [[2.0, 0.0], [12.0, 10.0]]
    oks = duplicate_oks_matrix(np.array([a, b]), np.full((2, 2), 0.9), sigmas=[0.1, 0.1])
    assert oks[0, 1] == pytest.approx(math.exp(-0.5))
    assert oks[0, 0] == 1.0
    # The scale is the reference's (row's): a 20×20 reference gives 2·400·0.2² = 32, a 10×10 one 8
    # (d² = 4 on joint 0, 12² + 10² = 244 on joint 1).
    big = [[2.0, 0.0], [22.0, 20.0]]
    o2 = duplicate_oks_matrix(np.array([a, big]), np.full((2, 2), 0.9), sigmas=[0.1, 0.1])
    assert o2[1, 0] == pytest.approx((math.exp(-4 / 32) + math.exp(-244 / 32)) / 2)
    assert o2[0, 1] == pytest.approx((math.exp(-4 / 8) + math.exp(-244 / 8)) / 2)
    # A joint either person scores <= joint_score takes no part (b's far joint is ignored); none shared → 0.
    far = [[2.0, 0.0], [500.0, 500.0]]
    s = np.array([[0.9, 0.9], [0.9, 0.05]])
    assert duplicate_oks_matrix(np.array([a, far]), s, sigmas=[0.1, 0.1])[0, 1] == pytest.approx(math.exp(-0.5))
    s = np.array([[0.9, 1e-5], [1e-5, 0.9]])
    assert duplicate_oks_matrix(np.array([a, far]), s, sigmas=[0.1, 0.1])[0, 1] == 0.0
    # The threshold is inclusive: >= drops, just above keeps.
    r = _persons([a, b], np.full((2, 2), 0.9), [2.0, 2.5])
    assert suppress_duplicates(r, 0.6, sigmas=[0.1, 0.1]).kept.tolist() == [1]
    exact = float(duplicate_oks_matrix(r.keypoints, r.keypoint_scores, sigmas=[0.1, 0.1])[1, 0])
    assert suppress_duplicates(r, exact, sigmas=[0.1, 0.1]).kept.tolist() == [1]
    assert suppress_duplicates(r, math.exp(-0.5) + 1e-9, sigmas=[0.1, 0.1]).kept.tolist() == [0, 1]


def test_near_identical_poses_keep_the_higher_scored_one() -> None:
    rng = np.random.default_rng(2)
    p = np.array(_pose(100, 100))[:, 0, :2]  # CrowdPose-14, 130 × 156 px extent
    twin = p + rng.normal(0, 1.0, p.shape)
    other = p + [400.0, 0.0]
    # The twin comes first in input order but scores higher: it is the one kept; the far person stays.
    r = _persons([twin, other, p], np.full((3, K), 0.8), [2.6, 2.0, 2.3], kept=[4, 5, 7])
    got = suppress_duplicates(r, 0.8)
    assert got.kept.tolist() == [4, 5]
    np.testing.assert_array_equal(got.keypoints, r.keypoints[:2])
    np.testing.assert_array_equal(got.pose_scores, [2.6, 2.0])
    assert [m.tolist() for m in got.merged_indices] == [[4], [5]]
    assert suppress_duplicates(r, 1.0).kept.tolist() == [4, 5, 7]  # OKS < 1: all kept at 1


def test_distinct_overlapping_persons_are_both_kept(shared_data) -> None:
    # The annotated persons of the two CrowdPose sample images (crowd index 0.33 and 0.39), as the association would
    # output them (labelled joints scored 0.9, the rest 1e-5), and each of them beside a copy of itself shifted by
    # half its box width (a crowd of look-alikes): OKS far below any threshold tried, so all are kept.
    d = json.loads((shared_data / "crowdpose" / "test_crowdpose.json").read_text())
    for im in d["images"]:
        anns = [a for a in d["annotations"] if a["image_id"] == im["id"] and a["num_keypoints"] > 0]
        kp = np.array([a["keypoints"] for a in anns], np.float64).reshape(len(anns), K, 3)
        sc = np.where(kp[..., 2] > 0, 0.9, 1e-5)
        r = _persons(kp[..., :2], sc, [2.5, 2.4])
        oks = duplicate_oks_matrix(r.keypoints, r.keypoint_scores)
        assert len(anns) == 2 and oks[0, 1] < 0.1 and oks[1, 0] < 0.1
        for thr in (0.5, 0.7, 0.8, 0.9):
            assert suppress_duplicates(r, thr).kept.tolist() == [0, 1]
        for i, a in enumerate(anns):
            shifted = _persons([kp[i, :, :2], kp[i, :, :2] + [0.5 * a["bbox"][2], 0]], sc[[i, i]], [2.5, 2.4])
            assert (
                duplicate_oks_matrix(shifted.keypoints, shifted.keypoint_scores).max(
                    initial=0, where=~np.eye(2, dtype=bool)
                )
                < 0.5
            )
            assert suppress_duplicates(shifted, 0.5).kept.tolist() == [0, 1]
        assert suppress_duplicates(_persons(kp[[0, 0], :, :2], sc[[0, 0]], [2.4, 2.5]), 0.9).kept.tolist() == [1]


def test_crowd_association_without_threshold_is_unchanged_and_with_it_filters() -> None:
    # A second box on one person whose peaks sit 25 px right of the first's: just outside the group / node radius
    # (σ_k·sqrt(180·220) <= 21 px), so both modes keep it as a person of its own; its OKS with the first
    # (scale: the first's 130 × 156 px joint extent) is about 0.6.
    a = _pose(100, 100, 0.9)
    b = [[(x + 25.0, y, 0.6)] for [(x, y, _)] in a]
    boxes = np.array([[80, 80, 260, 300], [105, 80, 285, 300.0]])
    cands = candidates_from([a, b])
    for method in ("released", "paper"):
        plain = (released_association if method == "released" else paper_association)(boxes, [0.9, 0.8], cands)
        off = crowd_association(boxes, [0.9, 0.8], cands, params=CrowdAssociationParams(method=method))
        assert CrowdAssociationParams().duplicate_oks is None
        assert off.kept.tolist() == plain.kept.tolist()
        for f in ("keypoints", "keypoint_scores", "pose_scores", "boxes_xyxy", "box_scores"):
            np.testing.assert_array_equal(getattr(off, f), getattr(plain, f))
        assert plain.kept.tolist() == [0, 1], method
        oks = duplicate_oks_matrix(plain.keypoints, plain.keypoint_scores)[0, 1]
        assert 0.5 < oks < 0.7
        for thr, kept in ((0.5, [0]), (0.7, [0, 1])):
            params = CrowdAssociationParams(method=method, duplicate_oks=thr)
            assert crowd_association(boxes, [0.9, 0.8], cands, params=params).kept.tolist() == kept, (method, thr)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), True])
def test_duplicate_oks_must_be_in_0_1_or_none(bad) -> None:
    with pytest.raises(ValueError, match="duplicate_oks"):
        CrowdAssociationParams(duplicate_oks=bad)
    assert CrowdAssociationParams(duplicate_oks=1.0).duplicate_oks == 1.0
    with pytest.raises(ValueError, match="duplicate_joint_score"):
        CrowdAssociationParams(duplicate_joint_score=-1.0)


def test_suppress_duplicates_equals_reference_loop_on_random_persons() -> None:
    rng = np.random.default_rng(17)
    dropped = 0
    for k, sig in ((14, CROWDPOSE_14.sigmas_array()), (17, COCO_17.sigmas_array())):
        for trial in range(40):
            n = int(rng.integers(0, 9))
            base = rng.uniform(0, 400, (max(n, 1), 1, 2)) + rng.uniform(0, 120, (max(n, 1), k, 2))
            # near copies of earlier persons (jitter of 0–6 px), some joints unscored
            src = np.array([int(rng.integers(0, max(i, 1))) if i and rng.random() < 0.5 else i for i in range(n)])
            kps = base[src[:n] if n else []] + rng.normal(0, rng.uniform(0, 6), (n, k, 2))
            scores = np.where(rng.random((n, k)) < 0.15, 1e-5, rng.uniform(0.05, 1.0, (n, k)))
            pose = np.round(rng.uniform(1, 3, n), 1)  # ties happen: input order breaks them
            r = _persons(kps.reshape(n, k, 2), scores, pose, kept=rng.permutation(20)[:n])
            thr = float(rng.choice([0.5, 0.7, 0.8, 0.9]))
            got = suppress_duplicates(r, thr, sigmas=sig)
            ref = ref_suppress(r.keypoints, scores, pose, sig, thr)
            assert got.kept.tolist() == r.kept[ref].tolist(), (k, trial)
            np.testing.assert_array_equal(got.keypoints, r.keypoints[ref])
            np.testing.assert_array_equal(got.keypoint_scores, r.keypoint_scores[ref])
            dropped += n - len(ref)
    assert dropped > 20  # the scenes exercise the suppression


# ----------------------------------------------------------------------------------------------------------------
# §2.5 crowd index, interference joints, JC targets
# ----------------------------------------------------------------------------------------------------------------


def test_crowd_index_reproduces_the_released_values(shared_data) -> None:
    d = json.loads((shared_data / "crowdpose" / "test_crowdpose.json").read_text())
    for im in d["images"]:
        ann = [a for a in d["annotations"] if a["image_id"] == im["id"] and a["num_keypoints"] > 0 and not a["iscrowd"]]
        kp = np.array([a["keypoints"] for a in ann], float).reshape(len(ann), 14, 3)
        b = np.array([a["bbox"] for a in ann], float)
        b[:, 2:] += b[:, :2]
        # The spec's rule matches 79.9 % of val images exactly (mean |error| 0.033); these two exactly.
        assert crowd_index(kp[..., :2], kp[..., 2], b) == pytest.approx(im["crowdIndex"], abs=0.0)


def test_crowd_index_and_interference_by_hand() -> None:
    kp = np.array([[[10, 10], [20, 20]], [[15, 15], [90, 90]]], float)
    vis = np.array([[1, 1], [2, 0]])
    boxes = np.array([[0, 0, 20, 20], [15, 15, 100, 100]], float)
    m = interference_mask(kp, vis, boxes)
    # Person 0's box holds person 1's joint 0 (15, 15); person 1's box holds person 0's joint 1 at (20, 20)
    # (inclusive bounds); person 1's joint 1 is unlabelled.
    assert m[0].tolist() == [[False, False], [True, False]]
    assert m[1].tolist() == [[False, True], [False, False]]
    assert crowd_index(kp, vis, boxes, decimals=None) == pytest.approx((1 / 2 + 1 / 1) / 2)
    xy, t = interference_joints(kp, vis, boxes[1], exclude=1)
    assert xy.tolist() == [[20, 20]] and t.tolist() == [1]
    assert crowd_index(np.zeros((0, 14, 2)), np.zeros((0, 14)), np.zeros((0, 4))) == 0.0


def test_jc_targets_by_hand() -> None:
    kps = np.array([[10.0, 10.0], [30.0, 40.0], [0.0, 0.0]])
    vis = np.array([1, 1, 0])
    inter = np.array([[20.0, 10.0], [12.0, 10.0], [5.0, 5.0], [30.0, 30.0]])
    types = np.array([0, 0, 2, 1])
    t, w = jc_targets(kps, vis, inter, types, HM)
    base, bw = gaussian_targets(kps, vis, HM)
    np.testing.assert_array_equal(w, bw)
    assert t[0, 10, 10] == 1.0 and t[0, 10, 20] == pytest.approx(0.5)  # attenuated peak μ = 0.5
    # Max-combined, not summed: between the target and the 2-px-away interference joint the target wins.
    g = np.exp(-4 / 8)
    assert t[0, 10, 12] == pytest.approx(max(g, 0.5))
    assert t[0, 10, 11] == pytest.approx(max(np.exp(-1 / 8), 0.5 * np.exp(-1 / 8)))
    assert t[1, 30, 30] == pytest.approx(0.5) and t[1, 40, 30] == 1.0
    assert not t[2].any()  # target joint unlabelled: no interference peak either
    np.testing.assert_array_equal(jc_targets(kps, vis, np.zeros((0, 2)), [], HM)[0], base)


def test_flip_swaps_interference_types() -> None:
    xy, t = flip_interference([[10.0, 5.0], [3.0, 4.0]], [0, 12], CROWDPOSE_14.flip_pairs, 100)
    assert xy.tolist() == [[89.0, 5.0], [96.0, 4.0]] and t.tolist() == [1, 12]
