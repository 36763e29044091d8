"""AlphaPose's integral-regression decoder (``NORM_TYPE: sigmoid``) and its "Combined" decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.heatmaps import (
    COMBINED_INTEGRAL_CHANNELS,
    combined_integral_channels,
    decode_combined,
    decode_heatmaps,
    decode_integral,
    heatmaps_to_keypoints,
)
from models.transforms import boxes_to_center_scale, center_scale_to_boxes, image_to_heatmap_coords

CROP = torch.tensor([[9.375, 12.5, 290.625, 387.5]])  # the crop box of AlphaPose's box (100, 50, 200, 350)


def _project(x_hm: float, y_hm: float, box=CROP[0].tolist(), hw=(64, 48)) -> tuple[float, float]:
    """Back-projection written out: ``x = bx1 + x_hm·w/W``, ``y = by1 + y_hm·h/H``."""
    bx1, by1, bx2, by2 = box
    return bx1 + x_hm * (bx2 - bx1) / hw[1], by1 + y_hm * (by2 - by1) / hw[0]


# ---- integral decoder ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x, y", [(30, 17), (0, 0), (47, 63), (3, 60)])
def test_delta_logit_decodes_to_its_pixel_with_sigmoid_score(x, y):
    hm = torch.full((1, 1, 64, 48), -50.0)  # σ(−50) ≈ 2e-22: the background carries no mass
    hm[0, 0, y, x] = 8.0
    coords, scores = decode_integral(hm)
    torch.testing.assert_close(coords[0, 0], torch.tensor([float(x), float(y)]), atol=1e-4, rtol=0)
    assert scores[0, 0].item() == pytest.approx(1 / (1 + math.exp(-8.0)), abs=1e-7)  # σ(8) = 0.99966…
    kps, kp_scores = heatmaps_to_keypoints(hm, CROP, method="integral")
    assert kps.dtype == torch.float32 and kp_scores.dtype == torch.float32
    torch.testing.assert_close(kps[0, 0], torch.tensor(_project(x, y)), atol=1e-3, rtol=0)
    torch.testing.assert_close(kp_scores, scores)


def test_uniform_and_centre_symmetric_maps_decode_to_the_centre():
    """AlphaPose weights the marginals by ``torch.arange(W)`` (the plain index): a uniform map's expectation is
    ``((W−1)/2, (H−1)/2)`` = (23.5, 31.5) on 64×48, not (24, 32)."""
    coords, scores = decode_integral(torch.full((2, 3, 64, 48), 1.5))
    torch.testing.assert_close(coords, torch.tensor([23.5, 31.5]).expand(2, 3, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(scores, torch.full((2, 3), 1 / (1 + math.exp(-1.5))))
    coords, _ = decode_integral(torch.zeros(1, 1, 5, 7))  # odd sizes: the centre pixel (3, 2)
    torch.testing.assert_close(coords[0, 0], torch.tensor([3.0, 2.0]), atol=1e-5, rtol=0)
    # Any map with point symmetry m[j, i] = m[H−1−j, W−1−i] (random logits, many peaks) has its mean at the centre.
    g = torch.Generator().manual_seed(7)
    hm = torch.randn(4, 17, 64, 48, generator=g) * 4
    hm = (hm + hm.flip(dims=[2, 3])) / 2
    coords, _ = decode_integral(hm)
    torch.testing.assert_close(coords, torch.tensor([23.5, 31.5]).expand(4, 17, 2), atol=2e-3, rtol=0)
    # Mirror symmetry in x alone fixes x only; y stays wherever the mass is (here the top rows).
    hm = torch.full((1, 1, 64, 48), -30.0)
    hm[0, 0, 2, 10] = hm[0, 0, 2, 37] = 5.0
    coords, _ = decode_integral(hm)
    torch.testing.assert_close(coords[0, 0], torch.tensor([23.5, 2.0]), atol=1e-4, rtol=0)


def test_sigmoid_normalisation_by_hand():
    """A 2×2 map of logits [[0, ln 3], [−ln 3, ln 9]]: σ = [[0.5, 0.75], [0.25, 0.9]], Σ = 2.4,
    x̄ = (0.75 + 0.9)/2.4 = 0.6875, ȳ = (0.25 + 0.9)/2.4 = 0.47916̅, score = max σ = 0.9.
    (A softmax of the logits would give x̄ = 12/13.3̅ = 0.9; dividing the raw logits is undefined.)"""
    hm = torch.tensor([[[[0.0, math.log(3)], [-math.log(3), math.log(9)]]]])
    coords, scores = decode_integral(hm)
    torch.testing.assert_close(coords[0, 0], torch.tensor([0.6875, 1.15 / 2.4]), atol=1e-6, rtol=0)
    torch.testing.assert_close(scores[0, 0], torch.tensor(0.9), atol=1e-6, rtol=0)
    kps, kp_scores = heatmaps_to_keypoints(hm, torch.tensor([[10.0, 20.0, 30.0, 60.0]]), method="integral")
    torch.testing.assert_close(kps[0, 0], torch.tensor([10 + 0.6875 * 10, 20 + 1.15 / 2.4 * 20]), atol=1e-5, rtol=0)
    torch.testing.assert_close(kp_scores, scores)


def test_matches_the_written_out_formula_on_random_maps():
    """σ → divide by the sum → Σ p·index over the full 2-D grid in float64, then AlphaPose's ``c/W − 0.5`` and
    ``(c + 0.5)·W`` in float32: the round trip cancels to float32 rounding and equals the decoder's output."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 5, 64, 48, generator=g) * 3 - 2
    s = torch.sigmoid(z.double())
    p = s / s.sum(dim=(2, 3), keepdim=True)
    jj, ii = torch.meshgrid(
        torch.arange(64.0, dtype=torch.float64), torch.arange(48.0, dtype=torch.float64), indexing="ij"
    )
    ref = torch.stack([(p * ii).sum(dim=(2, 3)), (p * jj).sum(dim=(2, 3))], dim=-1)
    alphapose = ((ref.float() / torch.tensor([48.0, 64.0]) - 0.5) + 0.5) * torch.tensor([48.0, 64.0])
    assert (alphapose.double() - ref).abs().max() < 1e-5
    coords, scores = decode_integral(z)
    torch.testing.assert_close(coords.double(), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(scores.double(), s.amax(dim=(2, 3)), atol=1e-7, rtol=0)


def test_all_underflowing_logits_stay_finite():
    """Below ≈ −88 every float32 σ(z) is 0 and AlphaPose's ``0/0`` is NaN; raypose normalises in log space."""
    hm = torch.full((1, 1, 64, 48), -200.0)
    hm[0, 0, 40, 12] = -150.0
    coords, scores = decode_integral(hm)
    assert torch.isfinite(coords).all()
    torch.testing.assert_close(coords[0, 0], torch.tensor([12.0, 40.0]), atol=1e-4, rtol=0)
    assert scores[0, 0].item() == 0.0


def test_empty_batches_and_bad_arguments():
    for method in ("integral", "combined"):
        coords, scores = decode_heatmaps(torch.zeros(0, 136, 64, 48), method)
        assert coords.shape == (0, 136, 2) and scores.shape == (0, 136)
        kps, sc = heatmaps_to_keypoints(torch.zeros(0, 68, 64, 48), torch.zeros(0, 4), method=method)
        assert kps.shape == (0, 68, 2) and sc.shape == (0, 68) and kps.dtype == sc.dtype == torch.float32
    with pytest.raises(ValueError, match="unknown decode method"):
        decode_heatmaps(torch.zeros(1, 17, 64, 48), "softmax")
    with pytest.raises(ValueError, match="combined"):
        decode_heatmaps(torch.zeros(1, 17, 64, 48), "integral", integral_channels=5)
    with pytest.raises(ValueError):
        decode_integral(torch.zeros(17, 64, 48))


# ---- combined decoder ---------------------------------------------------------------------------------------------


def _combined_probe(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel c a peak of raw value 2 at a channel-dependent pixel, its right neighbour 1, background −40.

    The heatmap decoder reads (x + 0.25, y) with score 2 (raw maximum, +0.25 towards the larger right
    neighbour). The integral decoder reads ((x·σ(2) + (x+1)·σ(1)) / (σ(2) + σ(1)), y) with score σ(2).
    """
    hm = torch.full((1, k, 64, 48), -40.0)
    pos = torch.tensor([[5 + c % 37, 5 + 3 * (c // 37) + (c % 5)] for c in range(k)], dtype=torch.float32)
    for c, (x, y) in enumerate(pos.long().tolist()):
        hm[0, c, y, x] = 2.0
        hm[0, c, y, x + 1] = 1.0
    return hm, pos


@pytest.mark.parametrize("k, n_heatmap", [(136, 26), (133, 23), (68, 26)])
def test_combined_splits_channels_as_alphapose_writer(k, n_heatmap):
    assert combined_integral_channels(k) == k - n_heatmap == COMBINED_INTEGRAL_CHANNELS[k]
    hm, pos = _combined_probe(k)
    s2, s1 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1))
    expect_hm = pos + torch.tensor([0.25, 0.0])
    expect_int = pos + torch.tensor([s1 / (s1 + s2), 0.0])
    coords, scores = decode_heatmaps(hm, "combined")
    torch.testing.assert_close(coords[0, :n_heatmap], expect_hm[:n_heatmap], atol=1e-6, rtol=0)
    torch.testing.assert_close(coords[0, n_heatmap:], expect_int[n_heatmap:], atol=1e-4, rtol=0)
    torch.testing.assert_close(scores[0, :n_heatmap], torch.full((n_heatmap,), 2.0))  # raw maxima
    torch.testing.assert_close(scores[0, n_heatmap:], torch.full((k - n_heatmap,), s2))  # sigmoid maxima
    kps, kp_scores = heatmaps_to_keypoints(hm, CROP, method="combined")
    expect = torch.cat([expect_hm[:n_heatmap], expect_int[n_heatmap:]])
    projected = torch.tensor([_project(x, y) for x, y in expect.tolist()])
    torch.testing.assert_close(kps[0], projected, atol=2e-3, rtol=0)
    torch.testing.assert_close(kp_scores, scores)
    assert kps.shape == (1, k, 2) and kps.dtype == kp_scores.dtype == torch.float32


def test_combined_explicit_split_and_refusals():
    hm, _ = _combined_probe(17)
    with pytest.raises(ValueError, match="integral_channels"):
        decode_heatmaps(hm, "combined")  # no default split for K = 17
    with pytest.raises(ValueError):
        heatmaps_to_keypoints(hm, CROP, method="combined")
    for bad in (-1, 18, 2.5):
        with pytest.raises(ValueError):
            decode_combined(hm, integral_channels=bad)
    # The ends of the range reduce to the single decoders.
    for n, method in ((0, "alphapose"), (17, "integral")):
        got = decode_combined(hm, integral_channels=n)
        want = decode_heatmaps(hm, method)
        torch.testing.assert_close(got, want)
    got = heatmaps_to_keypoints(hm, CROP, method="combined", integral_channels=5)
    c_hm, s_hm = heatmaps_to_keypoints(hm[:, :12], CROP, method="alphapose")
    c_int, s_int = heatmaps_to_keypoints(hm[:, 12:], CROP, method="integral")
    torch.testing.assert_close(got, (torch.cat([c_hm, c_int], 1), torch.cat([s_hm, s_int], 1)))


# ---- round trip on real annotations -------------------------------------------------------------------------------


def test_integral_round_trip_on_real_coco(coco_gt):
    """Real COCO persons: body keypoints → crop box (as the pipeline) → sharply peaked logit maps → integral decode.

    The logits are ``logit(0.95·exp(−d²/2σ²))`` with σ = 1 heatmap px around each float keypoint: the sigmoid map
    is then exactly that Gaussian (peak 0.95, background below 1e-100 beyond 20 px), so the decoder's expectation
    is the keypoint up to (a) grid aliasing of a sampled Gaussian, ~exp(−2π²σ²) ≈ 3e-9 heatmap px (Poisson
    summation), (b) the tail cut off by the map border, below 1e-4 heatmap px for keypoints at least 4σ inside
    (those closer to the border are left out: there the expectation is pulled inwards, a property of the decoder),
    and (c) float32 rounding, ~1e-5 heatmap px. One heatmap pixel spans crop_w/48 image px (≤ 7 px for these
    persons), so the decoded keypoints must come back within 0.5 image px with a wide margin; the test asserts the
    much tighter 0.01 px that the analysis predicts (measured 7e-5 px; 179 of the 181 labelled keypoints lie 4σ
    inside the map). A flat-topped ``A·g − C`` logit map would not do: its sigmoid is nearly the indicator of a
    disc with sub-pixel edges, whose sampled mean aliases by tenths of a heatmap pixel (``40·g − 30`` with
    σ = 1.5 came back up to 1.6 image px off).
    """
    boxes, kps, vis = [], [], []
    for a in coco_gt["annotations"]:
        if a["num_keypoints"] == 0 or a["iscrowd"]:
            continue
        x, y, w, h = a["bbox"]
        boxes.append([x, y, x + w, y + h])
        k = np.array(a["keypoints"], dtype=np.float64).reshape(17, 3)
        kps.append(k[:, :2])
        vis.append(k[:, 2] > 0)
    boxes, kps, vis = np.array(boxes), np.array(kps), np.array(vis)
    assert len(boxes) >= 10
    crop = center_scale_to_boxes(*boxes_to_center_scale(boxes))
    hm_xy = image_to_heatmap_coords(kps, crop)
    margin = 4.0
    usable = vis & (hm_xy[..., 0] >= margin) & (hm_xy[..., 0] <= 47 - margin)
    usable &= (hm_xy[..., 1] >= margin) & (hm_xy[..., 1] <= 63 - margin)
    assert usable.sum() >= 0.9 * vis.sum()  # the ×1.25 crop keeps nearly every labelled keypoint off the border

    xs, ys = torch.arange(48.0, dtype=torch.float64), torch.arange(64.0, dtype=torch.float64)
    c = torch.as_tensor(hm_xy)
    d2 = (ys[:, None] - c[..., 1, None, None]) ** 2 + (xs[None, :] - c[..., 0, None, None]) ** 2
    log_g = math.log(0.95) - d2 / 2  # log of the target sigmoid map, σ = 1 heatmap px
    logits = (log_g - torch.log1p(-torch.exp(log_g))).float()  # logit(g): σ(logits) = g, [N, 17, 64, 48]
    assert logits.max() > 2.9 and logits.min() < -1000  # sharply peaked: σ background is exactly 0 far away

    pred, score = heatmaps_to_keypoints(logits, torch.as_tensor(crop), method="integral")
    err = np.linalg.norm(pred.double().numpy() - kps, axis=-1)[usable]
    assert err.max() < 0.01, err.max()  # well inside the 0.5 px budget stated above
    # Score: the maximum of the sampled sigmoid map, 0.95·exp(−d²/2) at the pixel nearest to the keypoint.
    frac = hm_xy - np.round(hm_xy)
    expect_score = 0.95 * np.exp(-(frac**2).sum(-1) / 2)
    np.testing.assert_allclose(score.numpy()[usable], expect_score[usable], atol=1e-6)
    # The argmax decoder on the same maps is quarter-pixel coarse: the integral decoder really is finer here.
    coarse, _ = heatmaps_to_keypoints(logits, torch.as_tensor(crop), method="alphapose")
    assert np.linalg.norm(coarse.double().numpy() - kps, axis=-1)[usable].max() > 10 * err.max()


@pytest.mark.gpu
def test_integral_and_combined_on_cuda_match_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    g = torch.Generator().manual_seed(5)
    hm = torch.randn(64, 136, 64, 48, generator=g) * 4 - 3
    boxes = CROP.expand(64, 4)
    for method in ("integral", "combined"):
        cpu = heatmaps_to_keypoints(hm, boxes, method=method)
        gpu = heatmaps_to_keypoints(hm.cuda(), boxes.cuda(), method=method)
        torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-3, rtol=0)
        torch.testing.assert_close(gpu[1].cpu(), cpu[1], atol=1e-6, rtol=0)
