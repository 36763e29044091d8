"""Heatmap decoding (AlphaPose-exact and DARK), person score, and the flip test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.heatmaps import (
    decode_heatmaps,
    flip_heatmaps,
    flip_test,
    heatmaps_to_keypoints,
    person_scores,
    render_gaussian_heatmaps,
)
from models.keypoints import COCO_17

CROP = torch.tensor([[9.375, 12.5, 290.625, 387.5]])


def test_spec_decode_reference_values():
    """Reference values produced by running AlphaPose's ``heatmap_to_coord_simple`` on these heatmaps."""
    hm = render_gaussian_heatmaps(torch.tensor([[[20.3, 30.6], [1.0, 10.0]]]), amplitude=torch.tensor([[0.9, 0.5]]))
    hm = torch.cat([hm, torch.full((1, 1, 64, 48), -0.05)], dim=1)
    kps, scores = heatmaps_to_keypoints(hm, CROP)
    torch.testing.assert_close(kps[0], torch.tensor([[128.02734, 192.67578], [15.234375, 71.09375], [9.375, 12.5]]))
    torch.testing.assert_close(scores[0], torch.tensor([0.87231, 0.5, -0.05]), atol=1e-5, rtol=0)


def _spike(x: int, y: int, left: float = 0.0, right: float = 0.0, up: float = 0.0, down: float = 0.0):
    hm = torch.zeros(1, 1, 64, 48)
    hm[0, 0, y, x] = 1.0
    if x > 0:
        hm[0, 0, y, x - 1] = left
    if x < 47:
        hm[0, 0, y, x + 1] = right
    if y > 0:
        hm[0, 0, y - 1, x] = up
    if y < 63:
        hm[0, 0, y + 1, x] = down
    return hm


@pytest.mark.parametrize(
    "x, y, expect",
    [
        (1, 10, (1.0, 10.0)),  # px = 1 fails 1 < px: no refinement in either axis (the bound is joint)
        (2, 10, (2.25, 10.25)),
        (46, 62, (46.25, 62.25)),
        (47, 30, (47.0, 30.0)),  # px = W-1: no refinement
        (20, 63, (20.0, 63.0)),
        (20, 1, (20.0, 1.0)),
    ],
)
def test_quarter_pixel_refinement_bounds(x, y, expect):
    hm = _spike(x, y, right=0.5, down=0.5)
    coords, _ = decode_heatmaps(hm)
    assert tuple(coords[0, 0].tolist()) == expect


def test_refinement_sign_and_ties():
    coords, _ = decode_heatmaps(_spike(20, 30, left=0.3, right=0.3, up=0.6, down=0.1))
    assert coords[0, 0].tolist() == [20.0, 29.75]  # sign(0) = 0 in x, towards the larger neighbour in y
    hm = torch.zeros(1, 1, 64, 48)
    hm[0, 0, 40, 5] = 1.0
    hm[0, 0, 10, 30] = 1.0  # first of three equal maxima in row-major order wins ...
    hm[0, 0, 10, 31] = 1.0
    coords, _ = decode_heatmaps(hm)
    assert coords[0, 0].tolist() == [30.25, 10.0]  # ... and steps towards its equal right neighbour


def test_nonpositive_maximum_maps_to_origin_and_empty_batch():
    coords, vals = decode_heatmaps(torch.full((2, 3, 64, 48), -1.0))
    assert torch.all(coords == 0) and torch.all(vals == -1)
    coords, vals = decode_heatmaps(torch.zeros(0, 17, 64, 48))
    assert coords.shape == (0, 17, 2) and vals.shape == (0, 17)
    kps, scores = heatmaps_to_keypoints(torch.zeros(0, 17, 64, 48), torch.zeros(0, 4))
    assert kps.shape == (0, 17, 2)
    with pytest.raises(ValueError):
        decode_heatmaps(torch.zeros(17, 64, 48))


def test_dark_recovers_subpixel_centres():
    g = torch.Generator().manual_seed(3)
    centres = torch.rand(50, 17, 2, generator=g) * torch.tensor([40.0, 56.0]) + 4
    hm = render_gaussian_heatmaps(centres, sigma=2.0)
    dark, _ = decode_heatmaps(hm, method="dark")
    plain, _ = decode_heatmaps(hm, method="alphapose")
    assert (dark - centres).abs().max() < 0.01
    assert (plain - centres).abs().max() <= 0.25 + 1e-5
    assert (plain - centres).abs().max() > 0.1  # the quarter-pixel decoder really is coarser


def test_person_score_formula():
    """AlphaPose's writer: merged scores 0.8125 everywhere, box score 0.95 → 0.8125 + 0.95 + 1.25·0.8125 = 2.778125."""
    c = torch.full((1, 17), 0.8125)
    torch.testing.assert_close(person_scores(c, torch.tensor([0.95])), torch.tensor([2.778125]))
    c = torch.tensor([[0.1, 0.5, 0.9]])
    torch.testing.assert_close(person_scores(c, torch.tensor([0.2])), torch.tensor([0.5 + 0.2 + 1.125]))
    assert person_scores(torch.zeros(0, 17), torch.zeros(0)).shape == (0,)


def test_flip_heatmaps_intended_shift_and_pairs():
    hm = torch.randn(2, 17, 64, 48)
    before = hm.clone()
    out = flip_heatmaps(hm, COCO_17.flip_pairs, shift=True)
    assert torch.equal(hm, before)  # input untouched
    perm = COCO_17.flip_permutation()
    for k in range(17):
        mirrored = before[:, perm[k]].flip(-1)
        assert torch.equal(out[:, k, :, 0], mirrored[:, :, 0])  # column 0 keeps its value
        assert torch.equal(out[:, k, :, 1:], mirrored[:, :, :-1])  # every other column moves right by one
    # Without the shift, flipping twice is the identity.
    assert torch.equal(flip_heatmaps(flip_heatmaps(hm, COCO_17.flip_pairs, False), COCO_17.flip_pairs, False), hm)
    with pytest.raises(ValueError):
        flip_heatmaps(torch.zeros(1, 5, 4, 4), COCO_17.flip_pairs)


class _MirrorEquivariant(nn.Module):
    """A tiny heatmap model with model(mirror(x)) == mirror_and_swap(model(x)) exactly, by construction."""

    def __init__(self, flip_pairs) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        k = 17
        self.weight = nn.Parameter(torch.randn(k, 3, 3, 3, generator=g), requires_grad=False)
        for a, b in flip_pairs:  # the right channel's filter is the mirror of the left's
            self.weight.data[b] = self.weight.data[a].flip(-1)
        paired = {i for p in flip_pairs for i in p}
        for c in set(range(k)) - paired:
            self.weight.data[c] = (self.weight.data[c] + self.weight.data[c].flip(-1)) / 2
        self.pool = nn.AvgPool2d(4)

    def forward(self, x):
        return self.pool(nn.functional.conv2d(x, self.weight, padding=1))


def test_flip_test_is_mirror_symmetric():
    model = _MirrorEquivariant(COCO_17.flip_pairs)
    x = torch.randn(3, 3, 256, 192)
    plain = model(x)
    # With an exactly equivariant model, the un-shifted flip branch reproduces the plain output.
    torch.testing.assert_close(flip_test(model, x, COCO_17.flip_pairs, shift=False), plain)
    # Flip-test of the mirrored input is the mirror (with pair swap) of flip-test of the input, up to the shift.
    a = flip_test(model, x, COCO_17.flip_pairs, shift=False)
    b = flip_test(model, x.flip(-1), COCO_17.flip_pairs, shift=False)
    torch.testing.assert_close(flip_heatmaps(b, COCO_17.flip_pairs, shift=False), a)
    shifted = flip_test(model, x, COCO_17.flip_pairs, shift=True)
    expect = (plain + torch.cat([plain[..., :1], plain[..., :-1]], dim=3)) / 2
    torch.testing.assert_close(shifted, expect)


@pytest.mark.gpu
def test_decode_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    hm = render_gaussian_heatmaps(torch.rand(64, 17, 2) * torch.tensor([47.0, 63.0]))
    for method in ("alphapose", "dark"):
        cpu = heatmaps_to_keypoints(hm, CROP.expand(64, 4), method=method)
        gpu = heatmaps_to_keypoints(hm.cuda(), CROP.expand(64, 4).cuda(), method=method)
        torch.testing.assert_close(gpu[0].cpu(), cpu[0])
        torch.testing.assert_close(gpu[1].cpu(), cpu[1])
