"""Heatmap decoding, flip test and Gaussian heatmap rendering — vectorised, on any device.

Four decoders, chosen by ``method`` (``decode_heatmaps`` / ``heatmaps_to_keypoints``):

* ``"alphapose"`` (default): AlphaPose's ``heatmap_to_coord_simple`` (``alphapose/utils/transforms.py`` at commit
  c60106d) exactly — first-maximum argmax, coordinates (0, 0) when the maximum is ≤ 0, a ±0.25 px step towards the
  larger neighbour only when ``1 < px < W−1`` and ``1 < py < H−1``, and the raw maximum as the keypoint score. The
  decoder of AlphaPose's ``MSELoss`` models.
* ``"dark"``: the same argmax plus a second-order (Taylor) refinement on the log-heatmap around it (Zhang et al.,
  "Distribution-Aware Coordinate Representation", CVPR 2020), which recovers the centre of a Gaussian peak to a
  small fraction of a heatmap pixel instead of ±0.25.
* ``"integral"``: AlphaPose's symmetric integral regression, ``heatmap_to_coord_simple_regress`` with
  ``NORM_TYPE: sigmoid`` (the decoder of its ``L1JointRegression`` models; see ``decode_integral``): the map is
  squashed by a sigmoid, normalised to a distribution, and the keypoint is its expectation; the score is the
  maximum of the sigmoid map (0..1).
* ``"combined"``: AlphaPose's ``Combined`` loss models (most 133/136-keypoint configs): the first ``K − n``
  channels with ``"alphapose"``, the last ``n = integral_channels`` with ``"integral"`` (see ``decode_combined``).

Every method returns heatmap pixels that ``heatmaps_to_keypoints`` back-projects through the enlarged crop box
(``models.transforms.heatmap_to_image_coords``, the same affine for all four, as in AlphaPose).

The person score is AlphaPose's ``mean(c) + box_score + 1.25·max(c)`` (``proposal_score`` in
``alphapose/utils/writer.py``).

``render_gaussian_heatmaps`` is the encoder matching the decoder's pixel convention; the oracle SPPE and the
round-trip tests use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from models.names import COMBINED_INTEGRAL_CHANNELS, DECODE_METHODS, combined_integral_channels  # noqa: F401 (re-exported)
from models.transforms import heatmap_to_image_coords

__all__ = [
    "DecodeMethod",
    "DECODE_METHODS",
    "COMBINED_INTEGRAL_CHANNELS",
    "combined_integral_channels",
    "decode_heatmaps",
    "decode_integral",
    "decode_combined",
    "heatmaps_to_keypoints",
    "person_scores",
    "flip_heatmaps",
    "flip_test",
    "render_gaussian_heatmaps",
    "output_kind",
]

DecodeMethod = Literal["alphapose", "dark", "integral", "combined"]


def decode_heatmaps(
    heatmaps: torch.Tensor, method: DecodeMethod = "alphapose", integral_channels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps → keypoint positions in heatmap pixels and keypoint scores.

    Args:
        heatmaps: float ``[N, K, H, W]`` on any device (raw network output; for ``"integral"`` and ``"combined"``
            the integral channels are logits, squashed here by a sigmoid as AlphaPose's ``NORM_TYPE: sigmoid``).
        method: ``"alphapose"`` (exact AlphaPose decoding), ``"dark"`` (sub-pixel Taylor refinement),
            ``"integral"`` (``decode_integral``) or ``"combined"`` (``decode_combined``).
        integral_channels: only for ``"combined"``: how many trailing channels are decoded by integral
            regression (``combined_integral_channels``; default by K as AlphaPose's writer).
    Returns:
        ``coords`` float32 ``[N, K, 2]`` as (x, y) heatmap pixels, and ``scores`` float32 ``[N, K]``: raw maxima
        for heatmap-decoded channels, sigmoid maxima for integral-decoded ones. N = 0 gives empty tensors of
        those shapes.
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be [N, K, H, W], got shape {tuple(heatmaps.shape)}")
    if method not in DECODE_METHODS:
        raise ValueError(f"unknown decode method {method!r}; choose one of {', '.join(map(repr, DECODE_METHODS))}")
    if integral_channels is not None and method != "combined":
        raise ValueError(f"integral_channels applies to method='combined' only, not {method!r}")
    if method == "integral":
        return decode_integral(heatmaps)
    if method == "combined":
        return decode_combined(heatmaps, integral_channels)
    return _decode_argmax(heatmaps, method)


def _decode_argmax(heatmaps: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax decoding (``"alphapose"`` or ``"dark"``) of ``[N, K, H, W]`` → heatmap pixels and raw maxima."""
    n, k, h, w = heatmaps.shape
    hm = heatmaps.float()
    flat = hm.reshape(n, k, h * w)
    maxvals, idx = flat.max(dim=2)
    # torch.max/argmax return the first maximal index on CPU and CUDA, as NumPy's argmax in AlphaPose's get_max_pred.
    px = (idx % w).long()
    py = torch.div(idx, w, rounding_mode="floor").long()
    coords = torch.stack([px, py], dim=-1).float()
    positive = maxvals > 0
    coords = torch.where(positive[..., None], coords, torch.zeros_like(coords))
    px = torch.where(positive, px, torch.zeros_like(px))
    py = torch.where(positive, py, torch.zeros_like(py))
    if n * k == 0:
        return coords, maxvals

    # Gather the 4-neighbourhood (clamped indices; results only used where the bounds below hold).
    def at(dy: int, dx: int) -> torch.Tensor:
        yy = (py + dy).clamp(0, h - 1)
        xx = (px + dx).clamp(0, w - 1)
        return flat.gather(2, (yy * w + xx).reshape(n, k, 1)).reshape(n, k)

    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    if method == "alphapose":
        dx = torch.sign(at(0, 1) - at(0, -1)) * 0.25
        dy = torch.sign(at(1, 0) - at(-1, 0)) * 0.25
    else:
        # DARK: Newton step on log(hm) with central differences (the exact centre for a Gaussian peak).
        eps = 1e-10
        lc = torch.log(at(0, 0).clamp_min(eps))
        lr, ll = torch.log(at(0, 1).clamp_min(eps)), torch.log(at(0, -1).clamp_min(eps))
        ld, lu = torch.log(at(1, 0).clamp_min(eps)), torch.log(at(-1, 0).clamp_min(eps))
        ldr, lul = torch.log(at(1, 1).clamp_min(eps)), torch.log(at(-1, -1).clamp_min(eps))
        ldl, lur = torch.log(at(1, -1).clamp_min(eps)), torch.log(at(-1, 1).clamp_min(eps))
        gx, gy = (lr - ll) / 2, (ld - lu) / 2
        hxx, hyy = lr - 2 * lc + ll, ld - 2 * lc + lu
        hxy = (ldr - ldl - lur + lul) / 4
        det = hxx * hyy - hxy * hxy
        ok = (det > 1e-12) & (hxx < 0) & (hyy < 0)
        safe = torch.where(ok, det, torch.ones_like(det))
        dx = torch.where(ok, -(hyy * gx - hxy * gy) / safe, torch.zeros_like(det))
        dy = torch.where(ok, -(hxx * gy - hxy * gx) / safe, torch.zeros_like(det))
        # A Newton step beyond half a pixel means the peak is not locally quadratic: keep the argmax.
        far = (dx.abs() > 0.5) | (dy.abs() > 0.5)
        dx = torch.where(far, torch.zeros_like(dx), dx)
        dy = torch.where(far, torch.zeros_like(dy), dy)
    step = torch.stack([dx, dy], dim=-1)
    coords = coords + torch.where((inside & positive)[..., None], step, torch.zeros_like(step))
    return coords, maxvals


def decode_integral(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaPose's symmetric integral regression with ``NORM_TYPE: sigmoid``: logits → expected position and score.

    For each channel with logits ``z`` on an ``H×W`` grid: ``s = σ(z)``, ``p = s / Σ s``,
    ``x̄ = Σ p·i`` and ``ȳ = Σ p·j`` over column index ``i ∈ {0..W−1}`` and row index ``j ∈ {0..H−1}``
    (heatmap pixels, the same grid as the argmax decoders, so a uniform map gives ``((W−1)/2, (H−1)/2)``), and
    score ``max s = σ(max z)``.

    What AlphaPose's code does (``alphapose/utils/transforms.py``; line numbers as the spec gives them for
    c60106d, code read in the stored copy at 02dbe666): ``heatmap_to_coord_simple_regress`` (L591–647) calls
    ``_integral_tensor`` (L650–689), which reshapes to ``[N, K, H·W]``, applies ``norm_heatmap('sigmoid', ·)``
    (L692–707: ``.sigmoid()``), takes the score as the maximum of the sigmoid map (for other norm types it would
    be 1), divides by the sum, reshapes to ``[N, K, 1, H, W]``, sums to the x and y marginals, multiplies them by
    ``torch.arange(W)`` / ``arange(H)`` (``integral_op``: the plain index, no +0.5), sums, and returns
    ``x̄/W − 0.5``, ``ȳ/H − 0.5``.
    ``heatmap_to_coord_simple_regress`` then casts to float32 NumPy and undoes it, ``(c + 0.5)·W`` and
    ``(c + 0.5)·H`` — the two steps cancel (up to float32 rounding, ~1e-6 px) and the result is the expectation
    in heatmap pixels — and back-projects with ``transform_preds(·, center, scale, [W, H])``, the same affine as
    ``heatmap_to_coord_simple``. ``W, H`` there are the config's ``HEATMAP_SIZE``; here they are the map's own
    shape, the same for a consistent config.

    Deviation (numerics only): ``p`` is computed as ``softmax(log σ(z))``, which equals ``σ(z)/Σσ(z)`` but stays
    finite where every ``σ(z)`` underflows in float32 (all logits below about −88), where AlphaPose's
    ``0/0`` gives NaN.

    Flip test: with ``hms_flip`` AlphaPose averages the *decoded* coordinates and scores of the two branches
    (L608–615), but its demo never passes ``hms_flip``: ``--flip`` averages raw heatmaps (logits) before decoding
    (``scripts/demo_inference.py`` L251), which is what ``flip_test`` followed by this decoder does. (So demo and
    ``validate.py`` flip differ for regression models; raypose follows the demo.)

    Args:
        heatmaps: float ``[N, K, H, W]`` logits on any device.
    Returns:
        ``coords`` float32 ``[N, K, 2]`` (x, y) in heatmap pixels and ``scores`` float32 ``[N, K]`` in (0, 1).
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be [N, K, H, W], got shape {tuple(heatmaps.shape)}")
    n, k, h, w = heatmaps.shape
    z = heatmaps.float()
    if n * k == 0 or h * w == 0:
        return z.new_zeros((n, k, 2)), z.new_zeros((n, k))
    flat = z.reshape(n, k, h * w)
    scores = torch.sigmoid(flat.max(dim=2).values)  # σ is monotone: max σ(z) = σ(max z), the same float
    p = torch.softmax(F.logsigmoid(flat), dim=2).reshape(n, k, h, w)
    xs = torch.arange(w, device=z.device, dtype=z.dtype)
    ys = torch.arange(h, device=z.device, dtype=z.dtype)
    x = (p.sum(dim=2) * xs).sum(dim=2)  # x marginal [N, K, W] · column index
    y = (p.sum(dim=3) * ys).sum(dim=2)  # y marginal [N, K, H] · row index
    return torch.stack([x, y], dim=-1), scores


def decode_combined(heatmaps: torch.Tensor, integral_channels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaPose's "Combined" decoding: heatmap decoder for the first ``K − n`` channels, integral for the last ``n``.

    ``get_func_heatmap_to_coord`` (``alphapose/utils/transforms.py`` L955–964) returns
    ``[heatmap_to_coord_simple, heatmap_to_coord_simple_regress]`` for ``LOSS.TYPE: Combined``; the writer
    (``alphapose/utils/writer.py`` L115–137) applies the first to channels ``[:-face_hand_num]`` and the second to
    ``[-face_hand_num:]`` and concatenates coordinates and scores in that order. ``face_hand_num`` is 110 (face +
    hands) except 42 (hands) when K = 68: Halpe-136 → heatmap 0–25, integral 26–135; COCO-WholeBody-133 →
    heatmap 0–22, integral 23–132; Halpe-68 → heatmap 0–25, integral 26–67.

    Args:
        heatmaps: float ``[N, K, H, W]`` (raw maps for the first range, logits for the last).
        integral_channels: ``n``; ``None`` takes AlphaPose's default for K (``combined_integral_channels``,
            which raises ``ValueError`` for K other than 133, 136 and 68).
    Returns:
        ``coords`` float32 ``[N, K, 2]`` in heatmap pixels and ``scores`` float32 ``[N, K]``: raw maxima for the
        first ``K − n`` channels, sigmoid maxima (0..1) for the last ``n``.
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be [N, K, H, W], got shape {tuple(heatmaps.shape)}")
    k = heatmaps.shape[1]
    n_int = combined_integral_channels(k, integral_channels)
    c_hm, s_hm = _decode_argmax(heatmaps[:, : k - n_int], "alphapose")
    c_int, s_int = decode_integral(heatmaps[:, k - n_int :])
    return torch.cat([c_hm, c_int], dim=1), torch.cat([s_hm, s_int], dim=1)


def heatmaps_to_keypoints(
    heatmaps: torch.Tensor,
    crop_boxes_xyxy: torch.Tensor,
    method: DecodeMethod = "alphapose",
    integral_channels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode heatmaps and project them into the source image through each crop box (as ``heatmap_to_coord_simple``
    and ``heatmap_to_coord_simple_regress``, which share the back-projection).

    Args:
        heatmaps: float ``[N, K, H, W]``.
        crop_boxes_xyxy: float ``[N, 4]``, the enlarged crop regions (``models.transforms.center_scale_to_boxes``).
        method: ``"alphapose"``, ``"dark"``, ``"integral"`` or ``"combined"`` (``decode_heatmaps``).
        integral_channels: for ``"combined"`` only, the number of trailing integral-decoded channels (default by
            K as AlphaPose: 110 for K = 133/136, 42 for K = 68; other K must pass it).
    Returns:
        ``keypoints`` float32 ``[N, K, 2]`` in image pixels and ``keypoint_scores`` float32 ``[N, K]`` (raw maxima
        for heatmap-decoded channels, sigmoid maxima for integral-decoded ones).
    """
    coords, maxvals = decode_heatmaps(heatmaps, method, integral_channels)
    boxes = torch.as_tensor(crop_boxes_xyxy, device=coords.device)
    # float64 for the projection: image coordinates of 4K frames need more than float32's 24 bits of headroom.
    kps = heatmap_to_image_coords(coords.double(), boxes.double(), tuple(heatmaps.shape[-2:]))
    return kps.float(), maxvals


def output_kind(outputs: torch.Tensor, channels: slice | None = None) -> str:
    """Whether raw SPPE outputs look like MSE-trained heatmaps or like integral-regression logits.

    MSE heatmaps are trained towards Gaussians on a zero background, so most values sit near 0; integral-regression
    models are decoded through a sigmoid whose background must vanish, so most logits are strongly negative. Returns
    ``"heatmap"`` (median of ``outputs[:, channels]`` within ±0.5), ``"logits"`` (median below −3) or ``"unclear"``
    (random weights, or too little to say). Used to catch an AlphaPose checkpoint paired with the wrong YAML (their
    keys are identical, see ``models.alphapose_config``)."""
    x = outputs if channels is None else outputs[:, channels]
    if x.numel() == 0:
        return "unclear"
    median = float(x.float().median())
    if abs(median) <= 0.5 and float(x.float().amax()) > 0.05:
        return "heatmap"
    if median < -3.0:
        return "logits"
    return "unclear"


def person_scores(keypoint_scores: torch.Tensor, box_scores: torch.Tensor) -> torch.Tensor:
    """AlphaPose's person score, ``mean_j c_j + box_score + 1.25·max_j c_j`` (``writer.py``), float ``[N]``."""
    c = torch.as_tensor(keypoint_scores)
    if c.shape[0] == 0:
        return c.new_zeros((0,))
    return c.mean(dim=1) + torch.as_tensor(box_scores, dtype=c.dtype, device=c.device) + 1.25 * c.max(dim=1).values


def flip_heatmaps(heatmaps: torch.Tensor, flip_pairs: Sequence[tuple[int, int]], shift: bool = True) -> torch.Tensor:
    """Map the heatmaps of a horizontally flipped input back to the original orientation.

    Flips the width axis, swaps left/right channels, and with ``shift`` moves every column one to the right
    (column 0 keeps its value), which aligns the flipped map with the original's pixel grid.

    Deviation from AlphaPose (``flip_heatmap`` in ``alphapose/utils/transforms.py``): AlphaPose shifts with an
    in-place copy between overlapping views (``out[..., 1:] = out[..., :-1]``), whose result is
    implementation-defined — on CPU with torch 2.13 columns 17 and 33–47 come out wrong. raypose implements the
    intended shift with a copy.

    Returns a new tensor; the input is not modified.
    """
    out = heatmaps.flip(dims=[3])
    k = out.shape[1]
    perm = list(range(k))
    for a, b in flip_pairs:
        if max(a, b) >= k:
            raise ValueError(f"flip pair ({a}, {b}) out of range for {k} heatmap channels")
        perm[a], perm[b] = b, a
    out = out[:, perm]
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=3)
    return out


def flip_test(
    model: torch.nn.Module, inputs: torch.Tensor, flip_pairs: Sequence[tuple[int, int]], shift: bool = True
) -> torch.Tensor:
    """Run ``model`` on ``inputs`` and their mirror images in one batch and average the heatmaps (as AlphaPose's
    ``scripts/demo_inference.py`` ``--flip``)."""
    n = inputs.shape[0]
    both = model(torch.cat([inputs, inputs.flip(dims=[3])], dim=0))
    return (both[:n] + flip_heatmaps(both[n:], flip_pairs, shift=shift)) * 0.5


def render_gaussian_heatmaps(
    coords_hm: torch.Tensor,
    heatmap_size_hw: tuple[int, int] = (64, 48),
    sigma: float = 2.0,
    amplitude: torch.Tensor | float = 1.0,
    visible: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render unnormalised Gaussians ``amplitude·exp(−d²/2σ²)`` centred at float heatmap positions.

    Args:
        coords_hm: float ``[N, K, 2]`` (x, y) centres in heatmap pixels (same convention as ``decode_heatmaps``).
        heatmap_size_hw: (H, W) of the maps.
        sigma: Gaussian sigma in heatmap pixels (AlphaPose trains with 2).
        amplitude: peak value, scalar or ``[N, K]``.
        visible: optional bool ``[N, K]``; invisible keypoints get all-zero maps.
    Returns:
        float32 ``[N, K, H, W]`` on ``coords_hm``'s device.
    """
    h, w = heatmap_size_hw
    c = coords_hm.float()
    xs = torch.arange(w, device=c.device, dtype=torch.float32)
    ys = torch.arange(h, device=c.device, dtype=torch.float32)
    gx = torch.exp(-((xs[None, None, :] - c[..., 0:1]) ** 2) / (2 * sigma**2))  # [N, K, W]
    gy = torch.exp(-((ys[None, None, :] - c[..., 1:2]) ** 2) / (2 * sigma**2))  # [N, K, H]
    hm = gy[..., :, None] * gx[..., None, :]
    amp = torch.as_tensor(amplitude, dtype=torch.float32, device=c.device)
    hm = hm * (amp[..., None, None] if amp.dim() else amp)
    if visible is not None:
        hm = hm * visible.to(device=c.device, dtype=hm.dtype)[..., None, None]
    return hm
