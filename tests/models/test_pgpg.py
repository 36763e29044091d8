"""RMPE's proposal augmentation (``models.pgpg``): AlphaPose's released DPG (its distribution, draw for draw) and
the paper's pose-guided PGPG (atomic poses and per-atom offset mixtures recovered from data with known structure).

DPG constants are those of AlphaPose's ``train_sppe/src/utils/pose.py`` L29–104 (``pytorch`` branch); the PGPG is
RMPE's "Pose-guided Proposals Generator" (Fang et al., ICCV 2017). Tolerances of the distribution tests are 4
standard errors of the estimate."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from models.pgpg import (
    TRUNCATIONS,
    PGPGModel,
    align_poses,
    box_offsets,
    dpg_proposal,
    fit_pgpg,
    joints_inside,
    match_detections,
    pgpg_proposal,
    proposal_rng,
)

N_DRAWS = 20_000
BIG_IMAGE = (10_000.0, 10_000.0)  # far from every clamp
BOX = np.array([4000.0, 4000.0, 4200.0, 4400.0])  # w = 200, h = 400
WH4 = np.array([200.0, 400.0, 200.0, 400.0])
# AlphaPose's jitter (``pose.py`` L58–66), (mean, std) of x1, y1, x2, y2 normalised by w or h: literal on purpose, so
# that a changed constant in models.pgpg fails these tests
SPEC_MEAN = (-0.0142, 0.0043, 0.0154, -0.0013)
SPEC_STD = (0.1158, 0.0680, 0.1337, 0.0711)


def _central_pose(box: np.ndarray = BOX) -> np.ndarray:
    """17 joints spread over the middle 40 % of the box: inside every DPG box of these tests."""
    x1, y1, x2, y2 = box
    t = np.linspace(0.3, 0.7, 17)
    return np.stack([x1 + t * (x2 - x1), y1 + t[::-1] * (y2 - y1)], axis=1)


@pytest.fixture(scope="module")
def draws() -> list:
    rng = np.random.default_rng(20170101)
    kp = _central_pose()
    vis = np.ones(17, dtype=bool)
    return [dpg_proposal(rng, BOX, BIG_IMAGE, kp, vis) for _ in range(N_DRAWS)]


def _within(value: float, expected: float, se: float, n_se: float = 4.0) -> bool:
    return abs(value - expected) <= n_se * se


# ---- DPG distribution ---------------------------------------------------------------------------------------------


def test_dpg_branch_frequencies(draws):
    patch = np.mean([p.branch == "patch" for p in draws])
    assert _within(patch, 0.15, math.sqrt(0.15 * 0.85 / N_DRAWS)), patch
    assert {p.branch for p in draws} == {"patch", "jitter"}


def test_dpg_pre_enlargement(draws):
    start = np.array([p.start_xyxy for p in draws])
    r = (start[:, 2] - start[:, 0]) / 200.0 - 1.0  # both sides move by r·w/2
    assert r.min() >= 0.2 and r.max() < 0.3
    assert _within(r.mean(), 0.25, 0.1 / math.sqrt(12 * N_DRAWS))
    np.testing.assert_allclose((start[:, 3] - start[:, 1]) / 400.0 - 1.0, r)
    np.testing.assert_allclose(start[:, :2] + start[:, 2:], np.broadcast_to(BOX[:2] + BOX[2:], (N_DRAWS, 2)))


def test_dpg_jitter_moments(draws):
    """Offsets of the jittered corners from the (pre-enlarged) start box, normalised by the GT box's w and h: the
    four (mean, std) pairs of ``pose.py`` L58–66; no clamp can bite on this box."""
    j = [p for p in draws if p.branch == "jitter"]
    off = np.array([(p.sampled_xyxy - p.start_xyxy) / WH4 for p in j])
    n = len(off)
    for i, (mu, sd) in enumerate(zip(SPEC_MEAN, SPEC_STD)):
        assert _within(off[:, i].mean(), mu, sd / math.sqrt(n)), (i, off[:, i].mean(), mu)
        assert _within(off[:, i].std(), sd, sd / math.sqrt(2 * n)), (i, off[:, i].std(), sd)


def test_dpg_patch_keeps_aspect_ratio_and_lies_inside(draws):
    patches = [p for p in draws if p.branch == "patch"]
    s = np.array([p.sampled_xyxy for p in patches])
    start = np.array([p.start_xyxy for p in patches])
    pw, ph = s[:, 2] - s[:, 0] - 1, s[:, 3] - s[:, 1] - 1  # far corner = near corner + size + 1
    np.testing.assert_allclose(ph / pw, 2.0, rtol=1e-12)
    scale = pw / 200.0
    assert scale.min() > 0.85 and scale.max() < 1.0
    assert _within(scale.mean(), 0.925, 0.15 / math.sqrt(12 * len(scale)))
    # placed uniformly in [x1, x1 + w − pw] of the start box (w, h of the GT box); so inside the start box
    fx = (s[:, 0] - start[:, 0]) / (200.0 - pw)
    assert fx.min() >= 0 and fx.max() <= 1 and _within(fx.mean(), 0.5, 1 / math.sqrt(12 * len(fx)))
    assert np.all(s[:, :2] >= start[:, :2]) and np.all(s[:, 2:] <= start[:, 2:])
    # without pre-enlargement the patch lies in the GT box, its far corner at most the "+1" beyond
    rng = np.random.default_rng(1)
    raw = [dpg_proposal(rng, BOX, BIG_IMAGE, pre_enlarge=False) for _ in range(2000)]
    raw_s = np.array([p.sampled_xyxy for p in raw if p.branch == "patch"])
    assert len(raw_s) > 200
    assert np.all(raw_s[:, :2] >= BOX[:2]) and np.all(raw_s[:, 2:] <= BOX[2:] + 1)


def test_dpg_truncation_frequencies_above_13_joints(draws):
    counts = np.array([p.joint_count for p in draws])
    assert np.mean(counts > 13) > 0.99  # the central pose is inside almost every sampled box
    eligible = [p for p, c in zip(draws, counts) if c > 13]
    n = len(eligible)
    freq = Counter(p.truncation for p in eligible)
    assert set(freq) == {"none", *TRUNCATIONS}
    for option in TRUNCATIONS:
        assert _within(freq[option] / n, 0.04, math.sqrt(0.04 * 0.96 / n)), (option, freq[option])
    assert _within(freq["none"] / n, 0.68, math.sqrt(0.68 * 0.32 / n)), freq["none"]
    assert {p.truncation for p, c in zip(draws, counts) if c <= 13} <= {"none"}


def test_dpg_truncation_geometry_and_labels(draws):
    for p in draws[:3000]:
        x1, y1, x2, y2 = p.sampled_xyxy
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        expected = {
            "none": (x1, y1, x2, y2),
            "top_left": (x1, y1, mx, my),
            "top_right": (mx, y1, x2, my),
            "bottom_left": (x1, my, mx, y2),
            "bottom_right": (mx, my, x2, y2),
            "left_half": (x1, y1, mx, y2),
            "right_half": (mx, y1, x2, y2),
            "top_half": (x1, y1, x2, my),
            "bottom_half": (x1, my, x2, y2),
        }[p.truncation]
        np.testing.assert_array_equal(p.box_xyxy, expected)
        kp = _central_pose()
        bx1, by1, bx2, by2 = p.box_xyxy
        inside = (kp[:, 0] > bx1) & (kp[:, 0] < bx2) & (kp[:, 1] > by1) & (kp[:, 1] < by2)
        np.testing.assert_array_equal(p.inside, inside)
        assert not p.empty
    truncated = [p for p in draws if p.truncation != "none"]
    assert np.mean([p.inside.sum() for p in truncated]) < 10  # truncation removes labels
    # AlphaPose's quirk, kept: "empty" (zeroed input) is decided before truncation, so a quadrant away from the
    # (anti-diagonal) pose holds no joint yet is not empty
    assert any(p.inside.sum() == 0 and not p.empty for p in truncated)


def test_dpg_no_truncation_with_13_joints_or_fewer():
    rng = np.random.default_rng(2)
    kp = _central_pose()
    vis = np.ones(17, dtype=bool)
    vis[[0, 5, 10, 16]] = False  # 13 visible joints
    props = [dpg_proposal(rng, BOX, BIG_IMAGE, kp, vis) for _ in range(3000)]
    assert max(p.joint_count for p in props) == 13
    assert {p.truncation for p in props} == {"none"}
    assert all(np.array_equal(p.box_xyxy, p.sampled_xyxy) for p in props)
    assert not any(p.inside[[0, 5, 10, 16]].any() for p in props)  # invisible joints are never labelled
    # truncate=False: never, even with 17 joints inside
    props = [dpg_proposal(rng, BOX, BIG_IMAGE, kp, np.ones(17, bool), truncate=False) for _ in range(1000)]
    assert {p.truncation for p in props} == {"none"}


def test_dpg_labels_only_inside_and_empty():
    rng = np.random.default_rng(3)
    kp = _central_pose()
    kp[:6] = [[100.0, 100.0]] * 6  # far outside any proposal
    kp[6] = [0.0, 4200.0]  # x = 0: AlphaPose's "unlabelled" even if marked visible
    vis = np.ones(17, dtype=bool)
    for _ in range(500):
        p = dpg_proposal(rng, BOX, BIG_IMAGE, kp, vis)
        np.testing.assert_array_equal(p.inside, joints_inside(kp, vis, p.box_xyxy))
        assert not p.inside[:7].any()
    outside = np.full((17, 2), 50.0)
    for _ in range(200):
        p = dpg_proposal(rng, BOX, BIG_IMAGE, outside, vis)
        assert p.empty and p.joint_count == 0 and not p.inside.any() and p.truncation == "none"
    p = dpg_proposal(rng, BOX, BIG_IMAGE, kp, np.zeros(17, bool))
    assert p.empty and not p.inside.any()
    p = dpg_proposal(rng, BOX, BIG_IMAGE)
    assert p.inside.shape == (0,) and not p.empty and p.truncation == "none"


def test_dpg_draw_order_is_the_documented_one():
    """``g = rng.random(5)``, ``z = rng.standard_normal(4)``, always: recompute a jitter and a patch proposal by
    hand from those draws, and check that options and branches leave the generator in the same state."""
    seen = set()
    for seed in range(40):
        p = dpg_proposal(np.random.default_rng(seed), [100.7, 50.2, 300.9, 450.5], (640, 480))
        ref = np.random.default_rng(seed)
        g, z = ref.random(5), ref.standard_normal(4)
        x1, y1, x2, y2 = 100.0, 50.0, 300.0, 450.0  # int() of the corners
        w, h = x2 - x1, y2 - y1
        r = 0.2 + (0.3 - 0.2) * g[0]  # Python's random.uniform(a, b) = a + (b - a)·random()
        sx1, sy1 = max(0, x1 - w * r / 2), max(0, y1 - h * r / 2)
        sx2, sy2 = min(639, x2 + w * r / 2), min(479, y2 + h * r / 2)
        assert sy2 == 479  # the image clamp bites at the bottom here
        np.testing.assert_array_equal(p.start_xyxy, [sx1, sy1, sx2, sy2])
        if g[1] > 0.85:
            pw, ph = g[1] * w, g[1] * h
            px1, py1 = sx1 + g[2] * (w - pw), sy1 + g[3] * (h - ph)
            expected = [px1, py1, px1 + pw + 1, py1 + ph + 1]
        else:
            n = np.array(SPEC_MEAN) + np.array(SPEC_STD) * z
            jx1 = max(1, min(sx1 + n[0] * w, 637))
            jy1 = max(1, min(sy1 + n[1] * h, 477))
            expected = [jx1, jy1, min(max(jx1 + 2, sx2 + n[2] * w), 637), min(max(jy1 + 2, sy2 + n[3] * h), 477)]
        np.testing.assert_allclose(p.box_xyxy, expected, rtol=0, atol=1e-9)
        seen.add(p.branch)
    assert seen == {"patch", "jitter"}
    after = set()
    for pre in (True, False):
        for trunc in (True, False):
            for s in range(5):
                rng = np.random.default_rng(s)
                dpg_proposal(rng, BOX, BIG_IMAGE, _central_pose(), np.ones(17, bool), pre_enlarge=pre, truncate=trunc)
                after.add((s, rng.random()))
    assert len(after) == 5


def test_dpg_jitter_clamps_at_the_image_border():
    """Jittered corners are clamped to [1, W − 3] × [1, H − 3], the far corner at least 2 px past the near one."""
    rng = np.random.default_rng(4)
    props = [dpg_proposal(rng, [2.0, 3.0, 60.0, 61.0], (64, 64)) for _ in range(3000)]
    j = np.array([p.sampled_xyxy for p in props if p.branch == "jitter"])
    assert j[:, :2].min() == 1.0 and j[:, 2:].max() == 61.0  # both clamps bite on this box
    assert np.all(j[:, :2] >= 1) and np.all(j[:, 2:] <= 61)
    assert np.all(j[:, 2] >= np.minimum(j[:, 0] + 2, 61)) and np.all(j[:, 3] >= np.minimum(j[:, 1] + 2, 61))
    start = np.array([p.start_xyxy for p in props])
    assert start[:, :2].min() == 0.0 and start[:, 2:].max() == 63.0  # pre-enlargement clamps to [0, W − 1]


def test_dpg_rejects_degenerate_boxes():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        dpg_proposal(rng, [10.2, 10.0, 10.9, 50.0], (100, 100))  # zero width after int()
    with pytest.raises(ValueError):
        dpg_proposal(rng, [10.0, 10.0, 5.0, 50.0], (100, 100), pre_enlarge=False)


# ---- deterministic per-sample generators --------------------------------------------------------------------------


def test_proposal_rng_is_deterministic_and_epoch_dependent():
    kp, vis = _central_pose(), np.ones(17, bool)

    def box(seed, epoch, image_id, person):
        return dpg_proposal(proposal_rng(seed, epoch, image_id, person), BOX, BIG_IMAGE, kp, vis).box_xyxy

    a = box(0, 3, "000000000785.jpg", 2)
    np.testing.assert_array_equal(a, box(0, 3, "000000000785.jpg", 2))
    assert not np.array_equal(a, box(0, 4, "000000000785.jpg", 2))
    assert not np.array_equal(a, box(1, 3, "000000000785.jpg", 2))
    assert not np.array_equal(a, box(0, 3, "000000000786.jpg", 2))
    assert not np.array_equal(a, box(0, 3, "000000000785.jpg", 1))
    assert proposal_rng(0, 0, 785, 0).random() != proposal_rng(0, 0, "785", 0).random()
    # pinned: sha256-based, so the same on every machine and in every process (never Python's hash())
    assert proposal_rng(0, 0, "a", 0).integers(2**32) == 2929712759
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError):
            proposal_rng(bad, 0, "a", 0)


# ---- matching and alignment ---------------------------------------------------------------------------------------


def test_match_detections_is_greedy_by_score():
    gt = np.array([[0, 0, 100, 100], [20, 0, 120, 100], [500, 500, 600, 600]], dtype=float)
    det = np.array(
        [
            [10, 0, 110, 100],  # IoU .82 with GT 0 and with GT 1
            [20, 0, 120, 100],  # IoU 1 with GT 1 (a maximum-IoU assignment would pair them)
            [0, 0, 100, 100],  # IoU 1 with GT 0, .67 with GT 1
            [550, 550, 650, 650],  # IoU .14 with GT 2: below .5
        ],
        dtype=float,
    )
    scores = np.array([0.9, 0.8, 0.95, 0.99])
    m = match_detections(gt, det, scores)
    # by score: det 3 (no IoU >= .5), det 2 → GT 0 (IoU 1), det 0 → GT 1 (IoU .82, tie-free), det 1 → nothing left
    np.testing.assert_array_equal(m.gt_index, [0, 1])
    np.testing.assert_array_equal(m.det_index, [2, 0])
    np.testing.assert_allclose(m.iou, [1.0, 90 * 100 / (2 * 100 * 100 - 90 * 100)])
    empty = match_detections(gt, np.zeros((0, 4)), np.zeros(0))
    assert empty.gt_index.shape == (0,)


def test_align_poses_is_translation_and_scale_invariant_and_reports_exclusions():
    base = _central_pose()
    moved = base * 2.5 + np.array([300.0, -40.0])
    vis = np.ones((3, 17), bool)
    vis[2, 11] = False  # no left hip: excluded
    al = align_poses(np.stack([base, moved, base]), vis)
    np.testing.assert_array_equal(al.index, [0, 1])
    np.testing.assert_array_equal(al.excluded, [2])
    np.testing.assert_allclose(al.aligned[0], al.aligned[1], atol=1e-12)
    sh = (al.aligned[0, 5] + al.aligned[0, 6]) / 2
    hp = (al.aligned[0, 11] + al.aligned[0, 12]) / 2
    np.testing.assert_allclose(np.linalg.norm(sh - hp), 1.0)
    np.testing.assert_allclose((sh + hp) / 2, [0, 0], atol=1e-12)


# ---- PGPG on data with known structure ----------------------------------------------------------------------------

# Three atomic poses in aligned coordinates (torso centre at 0, torso length 1, y down), COCO-17 order.
_STAND = [
    (0, -0.85), (0.05, -0.9), (-0.05, -0.9), (0.1, -0.87), (-0.1, -0.87),
    (0.2, -0.5), (-0.2, -0.5), (0.25, -0.1), (-0.25, -0.1), (0.27, 0.25), (-0.27, 0.25),
    (0.12, 0.5), (-0.12, 0.5), (0.13, 1.0), (-0.13, 1.0), (0.13, 1.5), (-0.13, 1.5),
]  # fmt: skip
_ARMS_UP = list(_STAND)
_ARMS_UP[7:11] = [(0.35, -0.95), (-0.35, -0.95), (0.4, -1.4), (-0.4, -1.4)]
_SQUAT = list(_STAND)
_SQUAT[7:11] = [(0.45, -0.3), (-0.45, -0.3), (0.8, -0.3), (-0.8, -0.3)]
_SQUAT[13:17] = [(0.5, 0.7), (-0.5, 0.7), (0.3, 1.1), (-0.3, 1.1)]
TRUE_ATOMS = np.array([_STAND, _ARMS_UP, _SQUAT], dtype=float)
# Per-atom offset model: atoms 0 and 1 one Gaussian each, atom 2 a two-component mixture (equal weights).
TRUE_MEANS = [
    [np.array([-0.05, 0.00, 0.05, 0.00])],
    [np.array([0.00, -0.10, 0.00, 0.06])],
    [np.array([0.10, 0.03, -0.10, -0.03]), np.array([-0.15, 0.03, 0.15, -0.03])],
]
TRUE_STD = np.array([0.02, 0.015, 0.03, 0.02])
PER_ATOM = 150


def _synthetic(seed: int, per_atom: int = PER_ATOM, no_torso: int = 0, n_atoms: int = 3):
    """Poses of the first ``n_atoms`` atoms with noise, random scale and position, 10 % of the non-torso joints
    invisible; GT boxes around the visible joints; detector boxes from the atom's offset model."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_atoms), per_atom)
    n = labels.size
    pose = TRUE_ATOMS[labels] + rng.normal(0, 0.03, (n, 17, 2))
    scale = rng.uniform(60, 150, n)
    centre = rng.uniform(400, 1600, (n, 2))
    kp = pose * scale[:, None, None] + centre[:, None, :]
    vis = rng.random((n, 17)) > 0.1
    vis[:, [5, 6, 11, 12]] = True
    vis[rng.choice(n, no_torso, replace=False), 11] = False
    lo = np.where(vis[..., None], kp, np.inf).min(axis=1)
    hi = np.where(vis[..., None], kp, -np.inf).max(axis=1)
    gt = np.concatenate([lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)], axis=1)
    comp = np.where(labels == 2, rng.integers(0, 2, n), 0)
    mean = np.array([TRUE_MEANS[a][c] for a, c in zip(labels, comp)])
    delta = mean + rng.normal(0, 1, (n, 4)) * TRUE_STD
    wh = np.tile(gt[:, 2:] - gt[:, :2], 2)
    det = gt + delta * wh
    return kp, vis, gt, det, labels


@pytest.fixture(scope="module")
def synthetic_fit():
    kp, vis, gt, det, labels = _synthetic(7, no_torso=12)
    model = fit_pgpg(kp, vis, gt, det, seed=0)
    # which fitted atom is each true atom (nearest; must be a permutation)
    d = ((model.atoms[None] - TRUE_ATOMS[:, None]) ** 2).sum(axis=(2, 3))
    perm = d.argmin(axis=1)
    return model, perm, (kp, vis, gt, det, labels)


def test_pgpg_chooses_k_3_and_recovers_the_atoms(synthetic_fit):
    model, perm, (_, _, _, _, labels) = synthetic_fit
    assert model.k_selection.method == "silhouette" and model.k == 3, model.k_selection
    sil = model.k_selection.silhouette
    assert sil[0] is None and sil[2] > 0.7 and all(b is None or b < sil[2] for i, b in enumerate(sil) if i != 2)
    assert sorted(perm.tolist()) == [0, 1, 2]
    rms = np.sqrt(((model.atoms[perm] - TRUE_ATOMS) ** 2).sum(axis=2).mean(axis=1))
    assert np.all(rms < 0.03), rms
    assert model.n_pairs == 3 * PER_ATOM and model.n_excluded == 12
    assert model.atom_counts.sum() == 3 * PER_ATOM - 12
    assert np.all(np.abs(model.atom_counts[perm] - PER_ATOM) <= 12)


def test_pgpg_recovers_the_offset_mixtures(synthetic_fit):
    model, perm, _ = synthetic_fit
    for true_atom in range(3):
        mix = model.mixtures[perm[true_atom]]
        assert len(mix.weights) == len(TRUE_MEANS[true_atom]), (true_atom, mix.bic)
        se = TRUE_STD / math.sqrt(mix.n_samples / len(mix.weights))
        for mean in TRUE_MEANS[true_atom]:
            nearest = mix.means[np.argmin(((mix.means - mean) ** 2).sum(axis=1))]
            assert np.all(np.abs(nearest - mean) < 5 * se), (true_atom, nearest, mean)
        for c in range(len(mix.weights)):
            np.testing.assert_allclose(np.sqrt(np.diag(mix.covariances[c])), TRUE_STD, rtol=0.25)
    assert np.allclose([m.weights.sum() for m in model.mixtures], 1.0)


def test_pgpg_sampling_reproduces_each_atoms_offsets(synthetic_fit):
    model, perm, (kp, vis, gt, det, labels) = synthetic_fit
    offsets = box_offsets(gt, det)
    rng = np.random.default_rng(11)
    for true_atom in range(3):
        a = int(perm[true_atom])
        sample = model.sample_offsets(rng, a, N_DRAWS)
        truth = offsets[labels == true_atom]
        se = truth.std(axis=0) / math.sqrt(len(truth))
        assert np.all(np.abs(sample.mean(axis=0) - truth.mean(axis=0)) < 4 * se)
        np.testing.assert_allclose(sample.std(axis=0), truth.std(axis=0), rtol=0.15)


def test_pgpg_atom_of_classifies_new_poses(synthetic_fit):
    model, perm, _ = synthetic_fit
    kp, vis, _, _, labels = _synthetic(99, per_atom=40)
    got = np.array([model.atom_of(k, v) for k, v in zip(kp, vis)])
    assert np.mean(got == perm[labels]) > 0.97
    no_torso = vis[0].copy()
    no_torso[6] = False
    assert model.atom_of(kp[0], no_torso) == -1


def test_pgpg_round_trip_is_exact_and_json(synthetic_fit):
    model, _, _ = synthetic_fit
    d = model.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = PGPGModel.from_dict(json.loads(text))
    assert back.to_dict() == d
    np.testing.assert_array_equal(back.atoms, model.atoms)
    for m0, m1 in zip(model.mixtures + (model.pooled,), back.mixtures + (back.pooled,)):
        np.testing.assert_array_equal(m0.covariances, m1.covariances)
    np.testing.assert_array_equal(
        back.sample_offsets(np.random.default_rng(5), 1, 100), model.sample_offsets(np.random.default_rng(5), 1, 100)
    )


def test_pgpg_fit_is_deterministic():
    kp, vis, gt, det, _ = _synthetic(3, per_atom=40)
    a = fit_pgpg(kp, vis, gt, det, seed=4, max_k=4)
    b = fit_pgpg(kp, vis, gt, det, seed=4, max_k=4)
    assert a.to_dict() == b.to_dict()
    c = fit_pgpg(kp, vis, gt, det, k=2, seed=4)
    assert c.k == 2 and c.k_selection.method == "given"


def test_pgpg_one_pose_gives_one_atom():
    """One atomic pose with noise: no k >= 2 reaches the silhouette threshold, so k = 1 ("no_structure")."""
    kp, vis, gt, det, _ = _synthetic(5, per_atom=120, n_atoms=1)
    model = fit_pgpg(kp, vis, gt, det, seed=0, max_k=4)
    assert model.k == 1 and model.k_selection.method == "no_structure", model.k_selection
    assert max(s for s in model.k_selection.silhouette if s is not None) < 0.25
    rms = np.sqrt(((model.atoms[0] - TRUE_ATOMS[0]) ** 2).sum(axis=1).mean())
    assert rms < 0.02


def test_pgpg_proposal(synthetic_fit):
    model, perm, (kp, vis, gt, det, labels) = synthetic_fit
    i = int(np.flatnonzero(labels == 1)[0])
    image = (2000.0, 2000.0)
    p = pgpg_proposal(model, proposal_rng(0, 0, "img", i), gt[i], image, kp[i], vis[i])
    q = pgpg_proposal(model, proposal_rng(0, 0, "img", i), gt[i], image, kp[i], vis[i])
    np.testing.assert_array_equal(p.box_xyxy, q.box_xyxy)
    assert p.branch == "pgpg" and p.truncation == "none" and p.atom == perm[1]
    delta = model.sample_offsets(proposal_rng(0, 0, "img", i), p.atom, 1)[0]  # same draws
    wg, hg = gt[i, 2] - gt[i, 0], gt[i, 3] - gt[i, 1]
    np.testing.assert_allclose(p.box_xyxy, gt[i] + delta * [wg, hg, wg, hg])
    np.testing.assert_array_equal(p.inside, joints_inside(kp[i], vis[i], p.box_xyxy))
    # clamped to the image with a minimum size, even for a box hanging out of a tiny image
    rng = np.random.default_rng(0)
    for _ in range(300):
        r = pgpg_proposal(model, rng, [0.0, 0.0, 30.0, 60.0], (20, 20), kp[i] * 0, vis[i])
        x1, y1, x2, y2 = r.box_xyxy
        assert 0 <= x1 and x1 + 2 <= x2 <= 20 and 0 <= y1 and y1 + 2 <= y2 <= 20
        assert r.empty  # every joint at x = 0 is unlabelled
    # no visible torso: the pooled mixture
    v = vis[i].copy()
    v[5] = False
    assert pgpg_proposal(model, rng, gt[i], image, kp[i], v).atom == -1


# ---- real data ----------------------------------------------------------------------------------------------------


def test_pgpg_fits_the_real_coco_sample(coco_gt, shared_data):
    """The persons of ``test_coco.json`` matched to ``test_coco_det_AP_H_56.json``: few samples, so k = 1 by the
    "single" rule and one Gaussian per mixture; the model is valid and usable."""
    with open(shared_data / "coco" / "test_coco_det_AP_H_56.json") as f:
        dets = json.load(f)
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco_gt["images"]}
    kps, viss, gts, matched = [], [], [], []
    for image_id in sorted(sizes):
        anns = [a for a in coco_gt["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
        ds = [d for d in dets if d["image_id"] == image_id and d["category_id"] == 1]
        xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
        g = np.array([xyxy(a["bbox"]) for a in anns]).reshape(-1, 4)
        d = np.array([xyxy(x["bbox"]) for x in ds]).reshape(-1, 4)
        m = match_detections(g, d, [x["score"] for x in ds])
        for gi, di in zip(m.gt_index, m.det_index):
            k = np.array(anns[gi]["keypoints"], dtype=float).reshape(17, 3)
            kps.append(k[:, :2])
            viss.append(k[:, 2] > 0)
            gts.append(g[gi])
            matched.append(d[di])
    assert 8 <= len(kps) <= 14
    model = fit_pgpg(np.array(kps), np.array(viss), np.array(gts), np.array(matched), seed=0)
    assert model.k == 1 and model.k_selection.method == "single"
    assert "k = 1" in model.k_selection.note
    assert model.n_pairs == len(kps) and model.atom_counts.sum() == model.n_pairs - model.n_excluded
    assert np.all(np.isfinite(model.atoms)) and model.atoms.shape == (1, 17, 2)
    for mix in (*model.mixtures, model.pooled):
        assert len(mix.weights) == 1 and np.isclose(mix.weights.sum(), 1.0)
        assert np.all(np.linalg.eigvalsh(mix.covariances) > 0)
        assert np.all(np.abs(mix.means) < 0.3)  # a good detector: offsets of a few % of the box
    json.dumps(model.to_dict(), allow_nan=False)
    p = pgpg_proposal(model, proposal_rng(0, 0, 785, 0), gts[0], sizes[785], kps[0], viss[0])
    x1, y1, x2, y2 = p.box_xyxy
    assert 0 <= x1 < x2 <= sizes[785][0] and 0 <= y1 < y2 <= sizes[785][1]
