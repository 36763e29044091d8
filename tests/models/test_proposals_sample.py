"""models.proposals: one training sample (proposal box, AlphaPose augmentations, crop, crop-pixel labels)."""

from __future__ import annotations

import numpy as np
import pytest

from models.keypoints import COCO_17
from models.pgpg import dpg_proposal, joints_inside
from models.proposals import image_to_crop_matrix, proposal_sample, sample_rng
from models.targets import ALPHAPOSE_1X_AUGMENT, NO_AUGMENT, TrainAugment, training_sample

H, W = 480, 640
BOX = np.array([200.0, 60.0, 440.0, 420.0])


def _dots_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A black image with one filled disc (radius 6 px) of a distinct colour per COCO joint, the joints on a
    4-column grid inside BOX, ≥ 40 px apart. Returns (image, keypoints [17, 2], colours [17, 3])."""
    rng = np.random.default_rng(seed)
    cols = np.arange(17) % 4
    rows = np.arange(17) // 4
    kps = np.stack([230 + cols * 60.0, 80 + rows * 70.0], axis=1) + rng.uniform(-5, 5, (17, 2))
    colours = np.stack(
        [(37 * np.arange(17) + 40) % 216 + 40, (91 * np.arange(17) + 90) % 216 + 40, (53 * np.arange(17)) % 216 + 40],
        axis=1,
    ).astype(np.uint8)
    img = np.zeros((H, W, 3), np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    for (x, y), c in zip(kps, colours):
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 36] = c
    return img, kps, colours


def _flip_perm(flipped: bool) -> np.ndarray:
    perm = np.arange(17)
    if flipped:
        for a, b in COCO_17.flip_pairs:
            perm[a], perm[b] = b, a
    return perm


@pytest.mark.parametrize("mode", ["gt", "dpg"])
def test_each_stored_crop_keypoint_sits_on_its_dot(mode):
    """Geometry round trip: at every labelled crop keypoint the crop shows that joint's colour (flip and rotation
    included), and image_to_crop maps the original joints onto the stored crop keypoints."""
    img, kps, colours = _dots_image()
    vis = np.ones(17, bool)
    seen = {"flipped": 0, "rotated": 0, "checked": 0}
    for i in range(40):
        s = proposal_sample(
            img, BOX, kps, vis, sample_rng(3, 0, 785, 0, i), mode=mode, aug=ALPHAPOSE_1X_AUGMENT,
            flip_pairs=COCO_17.flip_pairs,
        )  # fmt: skip
        assert s.crop.shape == (256, 192, 3) and s.crop.dtype == np.uint8
        perm = _flip_perm(s.flipped)
        seen["flipped"] += s.flipped
        seen["rotated"] += s.rotation_deg != 0
        m = s.image_to_crop
        for j in np.flatnonzero(s.target_weight > 0):
            x, y = s.keypoints[j]
            src = perm[j]  # the original joint now stored at index j
            np.testing.assert_allclose(m[:, :2] @ kps[src] + m[:, 2], s.keypoints[j], atol=1e-3)
            if not (2 <= x < 190 and 2 <= y < 254) or s.empty:
                continue
            got = s.crop[int(round(y)), int(round(x))].astype(int)
            assert np.abs(got - colours[src]).max() <= 40, (i, j, src, got, colours[src])
            seen["checked"] += 1
        assert np.isnan(s.keypoints[s.target_weight == 0]).all()
    assert seen["flipped"] >= 5 and seen["rotated"] >= 5 and seen["checked"] >= 200, seen


def test_gt_mode_without_augmentation_is_training_sample():
    """mode 'gt' draws nothing before SimpleTransform: the crop equals models.targets.training_sample's."""
    img, kps, _ = _dots_image()
    vis = np.ones(17, bool)
    s = proposal_sample(
        img, BOX, kps, vis, np.random.default_rng(5), mode="gt", aug=ALPHAPOSE_1X_AUGMENT, flip_pairs=COCO_17.flip_pairs
    )
    crop, _, weight = training_sample(
        img, BOX, kps, vis, np.random.default_rng(5), ALPHAPOSE_1X_AUGMENT, COCO_17.flip_pairs
    )
    np.testing.assert_array_equal(s.crop, crop)
    assert s.branch == "gt" and s.truncation == "none" and s.atom is None and not s.empty
    np.testing.assert_array_equal(s.target_weight > 0, weight > 0)


def test_master_dpg_is_alphapose_current_training_sample():
    """dpg_variant 'master' = addDPG then SimpleTransform: training_sample with TrainAugment(dpg=True), draw for draw,
    every labelled joint kept (joints off the proposal included)."""
    import dataclasses

    img, kps, _ = _dots_image()
    vis = np.ones(17, bool)
    aug_dpg = dataclasses.replace(ALPHAPOSE_1X_AUGMENT, dpg=True)
    for i in range(10):
        s = proposal_sample(
            img, BOX, kps, vis, sample_rng(1, 0, 7, 0, i), mode="dpg", dpg_variant="master", aug=ALPHAPOSE_1X_AUGMENT,
            flip_pairs=COCO_17.flip_pairs,
        )  # fmt: skip
        crop, _, _ = training_sample(img, BOX, kps, vis, sample_rng(1, 0, 7, 0, i), aug_dpg, COCO_17.flip_pairs)
        np.testing.assert_array_equal(s.crop, crop)
        assert s.truncation == "none" and not s.empty and (s.target_weight == 1).all()


def test_dpg_labels_only_the_joints_inside_the_proposal():
    img, kps, _ = _dots_image()
    vis = np.ones(17, bool)
    vis[3] = False
    inside_counts = []
    for i in range(60):
        s = proposal_sample(img, BOX, kps, vis, sample_rng(0, 1, "img", 2, i), mode="dpg", aug=NO_AUGMENT)
        expected = joints_inside(kps, vis, s.proposal_box_xyxy)
        np.testing.assert_array_equal(s.target_weight > 0, expected)
        assert s.target_weight[3] == 0
        inside_counts.append(expected.sum())
        # the proposal is models.pgpg.dpg_proposal's with the same generator state
        p = dpg_proposal(sample_rng(0, 1, "img", 2, i), BOX, (W, H), kps, vis)
        np.testing.assert_array_equal(p.box_xyxy, s.proposal_box_xyxy)
        assert (p.branch, p.truncation) == (s.branch, s.truncation)
    assert min(inside_counts) < 16  # some proposals cut joints off (truncation, jitter)


def test_empty_proposal_has_a_zero_crop_and_no_labels():
    img, kps, _ = _dots_image()
    far = np.full((17, 2), 600.0)  # every joint far right and below the box: none can be inside a proposal
    far[:, 1] = 470.0
    box = np.array([20.0, 20.0, 120.0, 200.0])
    s = proposal_sample(img, box, far, np.ones(17, bool), sample_rng(0, 0, 1, 0, 0), mode="dpg", aug=NO_AUGMENT)
    assert s.empty and not s.crop.any() and not s.target_weight.any() and np.isnan(s.keypoints).all()


def test_samples_are_deterministic_per_id_and_differ_across_ids():
    img, kps, _ = _dots_image()
    vis = np.ones(17, bool)

    def crop(*ids):
        return proposal_sample(
            img, BOX, kps, vis, sample_rng(*ids), mode="dpg", aug=ALPHAPOSE_1X_AUGMENT, flip_pairs=COCO_17.flip_pairs
        ).crop.tobytes()

    a = crop(0, 0, 785, 1, 0)
    assert crop(0, 0, 785, 1, 0) == a
    others = {crop(1, 0, 785, 1, 0), crop(0, 1, 785, 1, 0), crop(0, 0, "785", 1, 0), crop(0, 0, 785, 2, 0)}
    others.add(crop(0, 0, 785, 1, 1))
    assert a not in others and len(others) == 5


def test_image_to_crop_folds_the_mirror():
    m = np.array([[0.5, 0.1, 3.0], [-0.1, 0.5, 7.0]])
    g = image_to_crop_matrix(m, True, 100)
    x = np.array([12.0, 34.0])
    mirrored = np.array([100 - x[0] - 1, x[1]])
    np.testing.assert_allclose(g[:, :2] @ x + g[:, 2], m[:, :2] @ mirrored + m[:, 2])
    np.testing.assert_array_equal(image_to_crop_matrix(m, False, 100), m)


def test_pgpg_mode_uses_the_model(monkeypatch):
    from models.pgpg import fit_pgpg

    rng = np.random.default_rng(0)
    n = 40
    base = rng.normal(0, 1, (17, 2))
    kp = base[None] * 30 + rng.uniform(200, 300, (n, 1, 2)) + rng.normal(0, 1, (n, 17, 2))
    vis = np.ones((n, 17), bool)
    gt = np.concatenate([kp.min(axis=1) - 10, kp.max(axis=1) + 10], axis=1)
    det = gt + rng.normal(0, 3, (n, 4))
    model = fit_pgpg(kp, vis, gt, det, k=1, seed=0)
    img, kps, _ = _dots_image()
    s = proposal_sample(img, BOX, kps, np.ones(17, bool), sample_rng(0, 0, 1, 0, 0), mode="pgpg", pgpg_model=model)
    assert s.branch == "pgpg" and s.atom in (-1, 0) and s.truncation == "none"
    with pytest.raises(ValueError, match="pgpg_model"):
        proposal_sample(img, BOX, kps, np.ones(17, bool), sample_rng(0, 0, 1, 0, 0), mode="pgpg")


def test_bad_arguments_raise():
    img, kps, _ = _dots_image()
    vis = np.ones(17, bool)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="mode"):
        proposal_sample(img, BOX, kps, vis, rng, mode="boxes")
    with pytest.raises(ValueError, match="dpg_variant"):
        proposal_sample(img, BOX, kps, vis, rng, mode="dpg", dpg_variant="v1")
    with pytest.raises(ValueError, match="aug.dpg"):
        proposal_sample(img, BOX, kps, vis, rng, mode="dpg", aug=TrainAugment(dpg=True))
    with pytest.raises(ValueError, match="positive width"):
        proposal_sample(img, [10, 10, 10, 50], kps, vis, rng, mode="gt")
    with pytest.raises(ValueError, match="proposal_index"):
        sample_rng(0, 0, 1, 0, -1)
