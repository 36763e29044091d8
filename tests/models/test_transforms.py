"""Top-down crop transforms: AlphaPose's reference vectors, the crop ↔ coordinate convention, CPU vs device crops,
and the crop → heatmap → decode round trip on real COCO boxes and keypoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.heatmaps import heatmaps_to_keypoints, render_gaussian_heatmaps
from models.transforms import (
    PIXEL_MEANS_RGB,
    boxes_to_center_scale,
    center_scale_to_boxes,
    crop_images,
    crop_images_torch,
    crop_matrices,
    heatmap_to_image_coords,
    image_to_heatmap_coords,
    image_to_input_coords,
    invert_affine,
    normalize_crops,
)


def test_spec_crop_geometry_reference_vectors():
    """Reference values produced by running AlphaPose's own ``_box_to_center_scale`` and ``get_affine_transform``
    on these boxes."""
    center, scale = boxes_to_center_scale(np.array([[100, 50, 200, 350], [10, 20, 310, 120]], dtype=np.float32))
    np.testing.assert_allclose(center, [[150, 200], [160, 70]])
    np.testing.assert_allclose(scale, [[281.25, 375], [375, 500]])
    crop = center_scale_to_boxes(center, scale)
    np.testing.assert_allclose(crop, [[9.375, 12.5, 290.625, 387.5], [-27.5, -180, 347.5, 320]])
    m = crop_matrices(crop)
    np.testing.assert_allclose(m[0], [[0.682667, 0, -6.4], [0, 0.682667, -8.533333]], atol=1e-6)
    np.testing.assert_allclose(m[1], [[0.512, 0, 14.08], [0, 0.512, 92.16]], atol=1e-6)
    # heatmap → image matrices AlphaPose gives for these boxes: [[5.859375, 0, 9.375], [0, 5.859375, 12.5]] and
    # [[7.8125, 0, -27.5], ...]
    pts = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]], dtype=torch.float64)
    img = heatmap_to_image_coords(pts, torch.as_tensor(crop))
    np.testing.assert_allclose(img[0].numpy(), [[9.375, 12.5], [9.375 + 5.859375, 12.5 + 5.859375]])
    np.testing.assert_allclose(img[1].numpy(), [[-27.5, -180], [-27.5 + 7.8125, -180 + 7.8125]])


def test_aspect_fix_and_degenerate_box():
    _, scale = boxes_to_center_scale(np.array([[0, 0, 30, 40], [0, 0, 0, 0]]))
    np.testing.assert_allclose(scale[0], [37.5, 50.0])  # exactly 0.75: neither branch, only ×1.25
    np.testing.assert_allclose(scale[1], [0, 0])
    crops = crop_images(
        [np.full((10, 10, 3), 200, np.uint8)],
        np.array([0]),
        center_scale_to_boxes(*boxes_to_center_scale(np.zeros((1, 4)))),
    )
    assert crops.shape == (1, 256, 192, 3) and crops.max() == 0


def test_crop_matrix_and_coordinate_maps_agree():
    rng = np.random.default_rng(1)
    boxes = np.array([[13.2, 40.7, 120.9, 300.1], [-20, -5, 50, 60]])
    crop = center_scale_to_boxes(*boxes_to_center_scale(boxes))
    pts = rng.uniform(0, 300, size=(2, 5, 2))
    m = crop_matrices(crop)
    back = (
        np.einsum("nij,nkj->nki", invert_affine(m)[:, :, :2], image_to_input_coords(pts, crop))
        + invert_affine(m)[:, None, :, 2]
    )
    np.testing.assert_allclose(back, pts, atol=1e-9)
    hm = image_to_heatmap_coords(pts, crop)
    np.testing.assert_allclose(hm, image_to_input_coords(pts, crop) / 4, atol=1e-9)  # heatmap px i ↔ input px 4i
    np.testing.assert_allclose(
        heatmap_to_image_coords(torch.as_tensor(hm), torch.as_tensor(crop)).numpy(), pts, atol=1e-9
    )


def test_crop_samples_where_the_matrix_says():
    """A single bright pixel lands in the crop where ``image_to_input_coords`` puts it (OpenCV pixel centres)."""
    img = np.zeros((400, 300, 3), np.uint8)
    img[123, 77] = 255
    box = np.array([[40.0, 60.0, 160.0, 260.0]])
    crop = center_scale_to_boxes(*boxes_to_center_scale(box))
    out = crop_images([img], np.array([0]), crop)[0, :, :, 0].astype(float)
    expected = image_to_input_coords(np.array([[[77.0, 123.0]]]), crop)[0, 0]
    ys, xs = np.nonzero(out)
    centroid = np.array([(xs * out[ys, xs]).sum(), (ys * out[ys, xs]).sum()]) / out[ys, xs].sum()
    np.testing.assert_allclose(centroid, expected, atol=0.05)


def _real_boxes(coco_gt):
    by_image = {}
    for a in coco_gt["annotations"]:
        x, y, w, h = a["bbox"]
        by_image.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    return by_image


def test_device_crop_matches_opencv(shared_data, coco_gt):
    import cv2

    boxes_by_image = _real_boxes(coco_gt)
    total = close = 0
    for im in coco_gt["images"]:
        rgb = cv2.cvtColor(cv2.imread(str(shared_data / "coco" / im["file_name"])), cv2.COLOR_BGR2RGB)
        boxes = np.array(boxes_by_image[im["id"]], dtype=np.float64)
        # real boxes, plus boxes hanging over every border (black fill must agree too)
        h, w = rgb.shape[:2]
        boxes = np.concatenate([boxes, [[-50, -40, 100, 200], [w - 80, h - 90, w + 60, h + 30]]])
        crop = center_scale_to_boxes(*boxes_to_center_scale(boxes))
        ref = crop_images([rgb], np.zeros(len(boxes), int), crop).astype(int)
        dev = (
            crop_images_torch(
                torch.from_numpy(rgb)[None], torch.zeros(len(boxes), dtype=torch.long), torch.as_tensor(crop)
            )
            .numpy()
            .astype(int)
        )
        diff = np.abs(ref - dev)
        total += diff.size
        close += int((diff <= 1).sum())
        assert diff.max() <= 3
    assert close / total >= 0.99


def test_device_crop_empty_and_batched_frames():
    frames = torch.zeros((2, 50, 60, 3), dtype=torch.uint8)
    frames[1] = 90
    assert crop_images_torch(frames, torch.zeros(0, dtype=torch.long), torch.zeros((0, 4))).shape == (0, 256, 192, 3)
    crop = torch.as_tensor(center_scale_to_boxes(*boxes_to_center_scale(np.array([[10, 10, 40, 40]] * 2))))
    out = crop_images_torch(frames, torch.tensor([0, 1]), crop)
    assert out[0].max() == 0 and out[1, 128, 96, 0] == 90


def test_normalize_crops_exact():
    crops = np.zeros((1, 256, 192, 3), np.uint8)
    crops[0, 5, 7] = (255, 128, 0)
    x = normalize_crops(crops)
    assert x.shape == (1, 3, 256, 192) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0, :, 5, 7].numpy(), [1 - 0.406, 128 / 255 - 0.457, -0.480], atol=1e-6)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), -np.array(PIXEL_MEANS_RGB), atol=1e-7)
    with pytest.raises(TypeError):
        normalize_crops(torch.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize("method, tol_px", [("dark", 0.5), ("alphapose", None)])
def test_crop_heatmap_decode_round_trip_on_real_coco(coco_gt, method, tol_px):
    """Real COCO boxes and keypoints → crop box → Gaussian heatmaps at the keypoints → decode → image pixels.

    With DARK decoding every labelled keypoint comes back within 0.5 px. AlphaPose's decoder quantises to a quarter
    heatmap pixel, so its bound is 0.25 heatmap px per axis (0.25·crop_w/48 image px) away from the border rows.
    """
    boxes, kps, vis = [], [], []
    for a in coco_gt["annotations"]:
        if a["num_keypoints"] == 0:
            continue
        x, y, w, h = a["bbox"]
        boxes.append([x, y, x + w, y + h])
        k = np.array(a["keypoints"], dtype=np.float64).reshape(17, 3)
        kps.append(k[:, :2])
        vis.append(k[:, 2] > 0)
    boxes, kps, vis = np.array(boxes), np.array(kps), np.array(vis)
    assert len(boxes) == 12
    crop = center_scale_to_boxes(*boxes_to_center_scale(boxes))
    hm_xy = image_to_heatmap_coords(kps, crop)
    inside = vis & (hm_xy[..., 0] >= 0) & (hm_xy[..., 0] <= 47) & (hm_xy[..., 1] >= 0) & (hm_xy[..., 1] <= 63)
    assert inside[vis].mean() >= 0.97  # the ×1.25 crop holds (nearly) every labelled keypoint
    heatmaps = render_gaussian_heatmaps(torch.as_tensor(hm_xy), sigma=2.0, visible=torch.as_tensor(inside))
    pred, score = heatmaps_to_keypoints(heatmaps, torch.as_tensor(crop), method=method)
    err = np.abs(pred.double().numpy() - kps)
    interior = (
        inside & (hm_xy[..., 0] >= 2.5) & (hm_xy[..., 0] <= 45.5) & (hm_xy[..., 1] >= 2.5) & (hm_xy[..., 1] <= 61.5)
    )
    if tol_px is not None:
        assert err[inside].max() < tol_px, err[inside].max()
    else:
        px_per_hm = (crop[:, 2] - crop[:, 0]) / 48
        bound = 0.25 * px_per_hm[:, None, None] + 1e-6
        assert np.all(err[interior] <= np.broadcast_to(bound, err.shape)[interior])
    assert torch.all(score[torch.as_tensor(inside)] > 0.5)


def test_normalize_crops_to_bf16_rounds_once():
    """bf16 input is the float32 normalisation rounded once (not /255 and the means each rounded in bf16), and stays
    channels-last so the network's NHWC kernels read it without a copy."""
    import torch

    from models.transforms import normalize_crops

    crops = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    ref = normalize_crops(crops)
    got = normalize_crops(crops, dtype=torch.bfloat16)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, ref.to(torch.bfloat16))
