"""Training crops and targets (``models.targets``): AlphaPose's ``_target_generator`` values and edge rules, the
decode round trip, the unaugmented crop = the inference crop, flips, augmentation statistics (spec §7.2) and the
weighted MSE loss (§7.4)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from models.heatmaps import decode_heatmaps, render_gaussian_heatmaps
from models.keypoints import COCO_17
from models.targets import (
    ALPHAPOSE_1X_AUGMENT,
    ALPHAPOSE_2X_AUGMENT,
    NO_AUGMENT,
    TrainAugment,
    dpg_box,
    flip_boxes,
    flip_keypoints,
    gaussian_targets,
    heatmap_mse_loss,
    rotated_crop_matrix,
    sample_transform,
    training_sample,
)
from models.transforms import (
    ALPHAPOSE_CROP,
    boxes_to_center_scale,
    crop_images,
    crop_matrices,
    image_to_input_coords,
)

PAIRS = COCO_17.flip_pairs


def _patch_value(d2: float) -> np.float32:
    """The σ = 2 patch value at squared distance ``d2`` from the centre, in float32 as AlphaPose computes it."""
    return np.float32(np.exp(np.float32(-d2) / np.float32(8.0)))


def _person(rng: np.random.Generator, box=(100.0, 50.0, 220.0, 350.0), k: int = 17) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(box)
    return np.asarray(b), rng.uniform(b[:2] + 5, b[2:] - 5, size=(k, 2))


# --- gaussian_targets ---------------------------------------------------------------------------------------------


def test_gaussian_patch_at_exact_pixel():
    target, weight = gaussian_targets(np.array([[10.0, 20.0]]), np.array([True]))
    assert target.shape == (1, 64, 48) and target.dtype == np.float32 and weight.dtype == np.float32
    t = target[0]
    assert t[20, 10] == 1.0 and weight[0] == 1.0
    assert t[20, 11] == _patch_value(1) and t[21, 10] == _patch_value(1) and t[19, 9] == _patch_value(2)
    assert t[20, 12] == _patch_value(4) and math.isclose(float(t[20, 12]), math.exp(-0.5), rel_tol=1e-6)
    assert t[26, 10] == _patch_value(36) and t[14, 16] == _patch_value(72)  # the 13×13 window's edge and corner
    assert t[27, 10] == 0 and t[20, 17] == 0 and t[13, 10] == 0  # just outside the window
    assert np.count_nonzero(t) == 169
    offs = np.arange(-6, 7)
    assert math.isclose(float(t.sum()), float(np.exp(-(offs[:, None] ** 2 + offs[None] ** 2) / 8).sum()), rel_tol=1e-6)


def test_gaussian_centre_is_rounded_half_up_by_truncation():
    pts = np.array([[10.5, 20.49], [10.49, 20.5], [-0.7, 5.0]])
    target, weight = gaussian_targets(pts, np.ones(3))
    assert target[0, 20, 11] == 1.0 and target[1, 21, 10] == 1.0
    # int(-0.7 + 0.5) = int(-0.2) = 0: the centre is column 0, not -1
    assert target[2, 5, 0] == 1.0 and weight.tolist() == [1.0, 1.0, 1.0]


def test_gaussian_near_border_is_clipped_not_dropped():
    target, weight = gaussian_targets(np.array([[1.2, 62.6]]), np.array([1]))
    t = target[0]
    assert weight[0] == 1.0 and t[63, 1] == 1.0  # centre (1, 63)
    assert t[63, 0] == _patch_value(1) and t[57, 1] == _patch_value(36) and t[57, 7] == _patch_value(72)
    assert t[56].max() == 0 and t[:, 8:].max() == 0
    assert np.count_nonzero(t) == 7 * 8  # rows 57..63, columns 0..7


def test_gaussian_outside_rules():
    pts = np.array(
        [
            [60.0, 10.0],  # μx = 60, ul = 54 ≥ 48 → weight 0
            [54.0, 10.0],  # ul = 48 ≥ 48 → weight 0
            [53.4, 10.0],  # μx = 53: ul = 47, only column 47 (distance 6)
            [-7.0, 10.0],  # μx = int(-6.5) = -6: br = 1, column 0 at distance 6
            [-8.0, 10.0],  # μx = int(-7.5) = -7: br = 0, not < 0 → AlphaPose keeps weight 1, map all zero
            [-9.0, 10.0],  # μx = int(-8.5) = -8: br = -1 < 0 → weight 0
            [20.0, -9.0],  # same rule in y
            [20.0, 75.0],  # ul_y = 69 ≥ 64 → weight 0
            [20.0, 30.0],  # inside but not visible → weight 0, no Gaussian
        ]
    )
    vis = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0])
    target, weight = gaussian_targets(pts, vis)
    assert weight.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert target[2, 10, 47] == _patch_value(36) and np.count_nonzero(target[2]) == 13
    assert target[3, 10, 0] == _patch_value(36) and np.count_nonzero(target[3]) == 13
    for j in (0, 1, 4, 5, 6, 7, 8):
        assert target[j].max() == 0, j


def test_gaussian_batched_shapes_and_float_visibility():
    pts = np.full((2, 3, 17, 2), 20.0)
    vis = np.ones((2, 3, 17), dtype=np.float32)
    vis[1, 2, 5] = 0.4  # AlphaPose: weight = v, but no Gaussian unless v > 0.5
    target, weight = gaussian_targets(pts, vis, heatmap_hw=(32, 24), sigma=1)
    assert target.shape == (2, 3, 17, 32, 24) and weight.shape == (2, 3, 17)
    assert weight[1, 2, 5] == np.float32(0.4) and target[1, 2, 5].max() == 0 and target[0, 0, 0, 20, 20] == 1.0
    assert np.count_nonzero(target[0, 0, 0]) == 49  # 7×7 window for σ = 1


def test_targets_decode_back_to_their_keypoints():
    """A target decodes (``models.heatmaps``, "alphapose") to its integer centre exactly: the patch is symmetric
    about it, so the ±0.25 refinement's neighbour difference is 0. The keypoint is therefore recovered to within the
    centre rounding (≤ 0.5 heatmap px), and the patch equals ``render_gaussian_heatmaps`` at that centre."""
    rng = np.random.default_rng(3)
    pts = rng.uniform([2.0, 2.0], [45.0, 61.0], size=(40, 2))
    target, weight = gaussian_targets(pts, np.ones(40))
    coords, scores = decode_heatmaps(torch.from_numpy(target)[None])
    centres = np.trunc(pts + 0.5)
    np.testing.assert_array_equal(coords[0].numpy(), centres)
    assert np.abs(coords[0].numpy() - pts).max() <= 0.5
    assert torch.all(scores == 1) and np.all(weight == 1)
    rendered = render_gaussian_heatmaps(torch.from_numpy(centres)[None]).numpy()[0]
    window = target > 0
    np.testing.assert_allclose(target[window], rendered[window], rtol=1e-6)
    assert rendered[~window].max() < math.exp(-36 / 8) + 1e-7  # outside the window only Gaussian tails


# --- sample_transform / training_sample --------------------------------------------------------------------------


def test_no_augmentation_is_the_inference_crop_bit_for_bit():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    for box in ([100.0, 50.0, 200.0, 350.0], [10.3, 20.7, 310.1, 120.9], [400.5, 200.25, 630.0, 470.0]):
        box = np.asarray(box)
        kps = rng.uniform(box[:2], box[2:], size=(17, 2))
        vis = rng.random(17) > 0.2
        st = sample_transform(rng, box, kps, vis, NO_AUGMENT, PAIRS, 640, image_height=480)
        crop_box = ALPHAPOSE_CROP.crop_boxes(box[None])
        assert not st.flipped and st.rotation_deg == 0 and st.scale_multiplier == 1.0 and st.half_body is None
        assert np.array_equal(st.matrix, crop_matrices(crop_box)[0])
        np.testing.assert_allclose(st.keypoints[vis], image_to_input_coords(kps[None], crop_box)[0][vis], atol=1e-9)
        assert np.isnan(st.keypoints[~vis]).all() and np.array_equal(st.visible, vis)
        crop, target, weight = training_sample(image, box, kps, vis, rng, NO_AUGMENT, PAIRS)
        assert crop.dtype == np.uint8 and crop.shape == (256, 192, 3)
        assert np.array_equal(crop, crop_images([image], np.array([0]), crop_box)[0])
        ref_t, ref_w = gaussian_targets(image_to_input_coords(kps[None], crop_box)[0] / 4, vis)
        assert np.array_equal(target, ref_t) and np.array_equal(weight, ref_w)
    # the spec's reference matrix (§2.3 / §8.1)
    st = sample_transform(rng, np.array([100, 50, 200, 350]), np.zeros((17, 2)), np.zeros(17), NO_AUGMENT, PAIRS, 640)
    np.testing.assert_allclose(st.matrix, [[0.682667, 0, -6.4], [0, 0.682667, -8.533333]], atol=1e-6)


def _get_affine_three_points(center, scale_w, rot_deg, out_wh):
    """The three-point construction of AlphaPose's ``get_affine_transform`` as the spec describes it (§2.3): source
    centre, centre + the rotated half-width "up" vector, and the perpendicular third point; destination the output
    centre, W/2 above it, and its perpendicular; solved by ``cv2.getAffineTransform`` on float32 points."""
    r = math.radians(rot_deg)
    up = np.array([0.0, -scale_w / 2])
    src_dir = np.array([up[0] * math.cos(r) - up[1] * math.sin(r), up[0] * math.sin(r) + up[1] * math.cos(r)])
    w, h = out_wh

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src0, dst0 = np.asarray(center, dtype=np.float64), np.array([w / 2, h / 2])
    src1, dst1 = src0 + src_dir, dst0 + np.array([0.0, -w / 2])
    src = np.stack([src0, src1, third(src0, src1)]).astype(np.float32)
    dst = np.stack([dst0, dst1, third(dst0, dst1)]).astype(np.float32)
    return cv2.getAffineTransform(src, dst)


@pytest.mark.parametrize("rot", [0.0, 17.5, -63.0, 80.0])
def test_rotated_matrix_equals_the_three_point_construction(rot):
    center, scale = np.array([150.0, 200.0]), np.array([281.25, 375.0])
    m = rotated_crop_matrix(center, scale, rot, (256, 192))
    np.testing.assert_allclose(m, _get_affine_three_points(center, scale[0], rot, (192, 256)), atol=2e-4)
    # positive r: a point right of the centre moves up in the crop (content turns counter-clockwise on screen)
    p = m @ np.array([200.0, 200.0, 1.0])
    assert (p[1] < 128) == (rot > 0) or rot == 0


def test_flip_mirrors_x_and_swaps_left_right_with_a_bright_dot():
    """A dot drawn at the left wrist lands, after a forced flip, at the peak of the *right* wrist's target map, and
    the flipped crop's keypoints are the unflipped ones mirrored about x = 96 (x → 192 − x: AlphaPose's
    ``W − x − 1`` mirror with ``center_x → W − center_x − 1``, which is why its flip test shifts heatmaps by one)."""
    rng = np.random.default_rng(5)
    image = np.zeros((400, 320, 3), dtype=np.uint8)
    box, kps = _person(rng, box=(90.0, 40.0, 230.0, 360.0))
    lw, rw = COCO_17.index("left_wrist"), COCO_17.index("right_wrist")
    kps[lw], kps[rw] = (200.0, 180.0), (110.0, 190.0)  # the two wrists far apart
    kps = np.round(kps)
    x, y = kps[lw].astype(int)
    image[y - 1 : y + 2, x - 1 : x + 2] = 255
    vis = np.ones(17, dtype=bool)
    flip_only = TrainAugment(scale_factor=0.0, rot_prob=0.0, flip_prob=1.0)
    crop, target, weight = training_sample(image, box, kps, vis, np.random.default_rng(1), flip_only, PAIRS)
    gray = crop.astype(np.float64).sum(axis=2)
    ys, xs = np.nonzero(gray > 0)
    dot = np.array([np.average(xs, weights=gray[ys, xs]), np.average(ys, weights=gray[ys, xs])])
    peak_r = np.unravel_index(np.argmax(target[rw]), target[rw].shape)[::-1]
    peak_l = np.unravel_index(np.argmax(target[lw]), target[lw].shape)[::-1]
    assert np.abs(np.asarray(peak_r) - dot / 4).max() <= 1.0
    assert np.abs(np.asarray(peak_l) - dot / 4).max() > 3  # the left-wrist channel now holds the other wrist
    assert np.all(weight == 1)

    plain = sample_transform(np.random.default_rng(2), box, kps, vis, NO_AUGMENT, PAIRS, 320)
    flipped = sample_transform(np.random.default_rng(2), box, kps, vis, flip_only, PAIRS, 320)
    assert flipped.flipped and not plain.flipped
    perm = COCO_17.flip_permutation()
    np.testing.assert_allclose(flipped.keypoints[:, 0], 192 - plain.keypoints[perm, 0], atol=1e-9)
    np.testing.assert_allclose(flipped.keypoints[:, 1], plain.keypoints[perm, 1], atol=1e-9)
    # the same map from the original image: source_matrix of the flipped sample sends kps[j] to keypoints[perm[j]]
    mapped = kps @ flipped.source_matrix[:, :2].T + flipped.source_matrix[:, 2]
    np.testing.assert_allclose(mapped[perm], flipped.keypoints, atol=1e-9)
    # and pixels: the flipped crop is the unflipped crop mirrored about x = 96, i.e. column x' shows column 192 − x'
    smooth = np.zeros((400, 320, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:400, 0:320]
    smooth[..., 0] = (127 + 120 * np.sin(xx / 23.0) * np.cos(yy / 31.0)).astype(np.uint8)
    crop_p, _, _ = training_sample(smooth, box, kps, vis, np.random.default_rng(0), NO_AUGMENT, PAIRS)
    crop_f, _, _ = training_sample(smooth, box, kps, vis, np.random.default_rng(0), flip_only, PAIRS)
    diff = crop_f[:, 1:, 0].astype(int) - crop_p[:, ::-1][:, :-1, 0].astype(int)
    assert np.abs(diff).max() <= 2


def test_flip_keypoints_and_boxes():
    kps = np.array([[10.0, 5.0], [20.0, 6.0], [30.0, 7.0]])
    out, vis = flip_keypoints(kps, np.array([1, 1, 0]), [(1, 2)], 100)
    np.testing.assert_array_equal(out, [[89.0, 5.0], [0.0, 0.0], [79.0, 6.0]])  # invisible positions zeroed
    assert vis.tolist() == [True, False, True]
    np.testing.assert_array_equal(flip_boxes(np.array([[10.0, 1.0, 30.0, 2.0]]), 100), [[69.0, 1.0, 89.0, 2.0]])


def test_augmentation_frequencies_and_ranges_match_the_spec():
    rng = np.random.default_rng(2024)
    n = 4000
    box, kps = _person(rng)
    vis = np.ones(17, dtype=bool)
    draws = [sample_transform(rng, box, kps, vis, ALPHAPOSE_1X_AUGMENT, PAIRS, 640) for _ in range(n)]
    rot = np.array([d.rotation_deg for d in draws])
    mult = np.array([d.scale_multiplier for d in draws])
    flips = np.array([d.flipped for d in draws])
    tol = 4 * math.sqrt(0.25 / n)  # 4 binomial standard deviations
    assert abs(np.mean(rot != 0) - 0.6) < tol
    assert np.abs(rot).max() == 80.0 and np.abs(rot).max() <= 2 * 40
    assert abs(np.mean(np.abs(rot[rot != 0]) == 80.0) - 0.0455) < 0.02  # P(|z| > 2) clipped to ±2rf
    assert abs(np.std(rot[rot != 0]) - 40 * 0.9594) < 2.0  # std of N(0,1) clipped (not truncated) at ±2: 0.9594
    assert mult.min() == pytest.approx(0.7) and mult.max() == pytest.approx(1.3)
    assert abs(np.mean((mult == mult.min()) | (mult == mult.max())) - 0.3173) < tol  # P(|z| > 1)
    assert abs(mult.mean() - 1.0) < 0.01
    assert abs(flips.mean() - 0.5) < tol
    assert all(d.half_body is None for d in draws)  # PROB_HALF_BODY −1 in the 1x config
    # scale of the crop = (box aspect-fixed ×1.25) × multiplier
    _, base = boxes_to_center_scale(box[None])
    np.testing.assert_allclose(np.array([d.scale_wh for d in draws]), base * mult[:, None], rtol=1e-12)

    hb = [sample_transform(rng, box, kps, vis, ALPHAPOSE_2X_AUGMENT, PAIRS, 640) for _ in range(n)]
    kinds = np.array([d.half_body or "" for d in hb])
    applied = kinds != ""
    assert abs(applied.mean() - 0.3) < tol
    assert abs(np.mean(kinds[applied] == "upper") - 0.6915) < 4 * math.sqrt(0.25 / applied.sum())  # Φ(0.5), randn
    rots = np.array([d.rotation_deg for d in hb])
    assert np.abs(rots).max() <= 90.0 and np.abs(rots).max() == 90.0
    assert np.array([d.scale_multiplier for d in hb]).min() == pytest.approx(0.65)

    # exactly 8 visible joints: never half-body (needs more than 8), even at probability 1
    always = TrainAugment(prob_half_body=1.0)
    few = np.zeros(17, dtype=bool)
    few[:8] = True
    assert all(sample_transform(rng, box, kps, few, always, PAIRS, 640).half_body is None for _ in range(200))


def test_half_body_crop_geometry():
    rng = np.random.default_rng(7)
    box, kps = _person(rng)
    vis = np.ones(17, dtype=bool)
    aug = TrainAugment(scale_factor=0.0, rot_prob=0.0, flip_prob=0.0, prob_half_body=1.0)
    seen = set()
    for _ in range(60):
        st = sample_transform(rng, box, kps, vis, aug, PAIRS, 640)
        part = kps[:11] if st.half_body == "upper" else kps[11:]
        seen.add(st.half_body)
        np.testing.assert_allclose(st.center_xy, part.mean(axis=0), atol=1e-9)  # mean of the joints, not box centre
        w, h = part.max(axis=0) - part.min(axis=0)
        w, h = (w, w / 0.75) if w > 0.75 * h else (0.75 * h, h)
        np.testing.assert_allclose(st.scale_wh, np.array([w, h]) * 1.5, rtol=1e-12)
    assert seen == {"upper", "lower"}
    # lower body with only 2 visible joints: falls back to the upper body
    vis2 = vis.copy()
    vis2[13:] = False
    assert {sample_transform(rng, box, kps, vis2, aug, PAIRS, 640).half_body for _ in range(30)} == {"upper"}


def test_dpg_box_statistics():
    rng = np.random.default_rng(11)
    box = np.array([400.0, 300.0, 600.0, 700.0])
    out = np.array([dpg_box(rng, box, 2000, 2000) for _ in range(4000)])
    w, h = 200.0, 400.0
    size = out[:, 2:] - out[:, :2]
    # the patch branch keeps the box's aspect exactly (size u·w + 1 by u·h + 1); jitter never does (probability 0)
    u = (size[:, 0] - 1) / w
    patch = np.isclose(u, (size[:, 1] - 1) / h, rtol=0, atol=1e-12)
    assert abs(patch.mean() - 0.15) < 0.03
    assert u[patch].min() > 0.85 and u[patch].max() < 1.0
    assert np.all(out[patch, :2] >= box[:2]) and np.all(out[patch, 2:] <= box[2:] + 1)
    jit = out[~patch]
    rel = np.stack([(jit[:, 0] - 400) / w, (jit[:, 1] - 300) / h, (jit[:, 2] - 600) / w, (jit[:, 3] - 700) / h], 1)
    np.testing.assert_allclose(rel.mean(axis=0), [-0.0142, 0.0043, 0.0154, -0.0013], atol=0.012)
    np.testing.assert_allclose(rel.std(axis=0), [0.1158, 0.068, 0.1337, 0.0711], rtol=0.06)


def test_same_seed_same_sample():
    image = np.random.default_rng(0).integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    box, kps = _person(np.random.default_rng(1), box=(50.0, 20.0, 200.0, 280.0))
    a = training_sample(image, box, kps, np.ones(17), np.random.default_rng(9), ALPHAPOSE_2X_AUGMENT, PAIRS)
    b = training_sample(image, box, kps, np.ones(17), np.random.default_rng(9), ALPHAPOSE_2X_AUGMENT, PAIRS)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_rotated_training_sample_keypoints_follow_the_pixels():
    """With every augmentation on, a dot at each keypoint is found at its target's peak (geometry of crop and
    targets agree under rotation, scale and flip)."""
    rng = np.random.default_rng(21)
    box = np.array([120.0, 80.0, 260.0, 380.0])
    kps = np.round(np.array([190.0, 230.0]) + rng.uniform(-30, 30, size=(17, 2)))  # inside every augmented crop
    aug = TrainAugment(rot_prob=1.0)
    for j in (0, 9, 16):
        image = np.zeros((460, 400, 3), dtype=np.uint8)
        x, y = kps[j].astype(int)
        image[y - 2 : y + 3, x - 2 : x + 3] = 255
        vis = np.zeros(17, dtype=bool)
        vis[j] = True
        for seed in range(3):
            crop, target, weight = training_sample(image, box, kps, vis, np.random.default_rng(seed), aug, PAIRS)
            k = int(np.argmax(weight))
            assert weight.sum() == 1
            gray = crop.astype(np.float64).sum(axis=2)
            ys, xs = np.nonzero(gray > 0)
            dot = np.array([np.average(xs, weights=gray[ys, xs]), np.average(ys, weights=gray[ys, xs])])
            peak = np.unravel_index(np.argmax(target[k]), target[k].shape)[::-1]
            assert np.abs(np.asarray(peak) - dot / 4).max() <= 1.0


# --- loss -------------------------------------------------------------------------------------------------------


def test_heatmap_mse_loss_by_hand():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]], requires_grad=True)
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0, 0, 0] = 1.0
    loss = heatmap_mse_loss(pred, target, torch.tensor([[1.0, 0.0]]))
    # joint 0: (1−1)² + 2² + 3² + 4² = 29; joint 1 weighted out; mean over N·K·H·W = 8, times 0.5
    assert loss.item() == pytest.approx(0.5 * 29 / 8)
    loss.backward()
    assert torch.all(pred.grad[0, 1] == 0) and pred.grad[0, 0, 0, 1].item() == pytest.approx(0.5 * 2 * 2 / 8)
    with torch.no_grad():
        other = pred.clone()
        other[0, 1] = -100.0
    assert heatmap_mse_loss(other, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(loss.item())
    # AlphaPose's (N, K, 1, 1) weight shape works too; unit weights = 0.5 · plain MSE
    w = torch.ones(1, 2, 1, 1)
    plain = torch.nn.functional.mse_loss(pred.detach(), target)
    assert heatmap_mse_loss(pred.detach(), target, w).item() == pytest.approx(0.5 * plain.item())
