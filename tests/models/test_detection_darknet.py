"""YOLOv3-SPP as AlphaPose runs it: the cfg parser on our own fixture of the yolov3-spp layer list, the darknet
``.weights`` round trip, the decode, the letterbox reference values that AlphaPose's own letterbox and inverse
produce, the +1-pixel NMS, and the pinned deviation (no batch-dependent NMS threshold, AlphaPose's
``YOLODetector.dynamic_write_results``)."""

from __future__ import annotations

import doctest
import hashlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import models.darknet
from models.darknet import (
    ConvLayer,
    Darknet,
    DarknetCfgError,
    DarknetWeightsError,
    MaxPoolLayer,
    RouteLayer,
    ShortcutLayer,
    UpsampleLayer,
    YoloLayer,
    decode_yolo,
    letterbox,
    letterbox_to_image,
    nms_plus_one,
    parse_darknet_cfg,
    read_darknet_cfg,
    read_darknet_weights,
    write_darknet_weights,
    yolo_person_boxes,
    yolov3_spp_cfg,
)
from models.detectors import YoloPersonDetector

FIXTURES = Path(__file__).parent / "fixtures"
SPP_CFG = FIXTURES / "yolov3-spp.cfg"
TINY_CFG = FIXTURES / "tiny-darknet.cfg"


@pytest.fixture(scope="module")
def spp_spec():
    return read_darknet_cfg(str(SPP_CFG))


def _randomize(model: nn.Module, seed: int) -> None:
    """Seeded random values in every tensor a darknet file stores (BN statistics included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, conv, bn in model.conv_blocks():
            for t in ([bn.bias, bn.weight, bn.running_mean] if bn is not None else [conv.bias]) + [conv.weight]:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            if bn is not None:
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)


# ------------------------------------------------------------------------------------------------------- parser


def test_parser_reads_yolov3_spp_layer_list(spp_spec):
    layers = spp_spec.layers
    assert (spp_spec.net.width, spp_spec.net.height, spp_spec.net.channels) == (608, 608, 3)
    assert len(layers) == 114  # darknet layers 0..113 (plain YOLOv3 has 107; SPP adds 6 pooling/route layers + 1 conv)
    kinds = [type(l).__name__ for l in layers]
    assert kinds.count("ConvLayer") == 76 and kinds.count("ShortcutLayer") == 23  # 52 in darknet-53, 8 per head
    assert [i for i, l in enumerate(layers) if isinstance(l, YoloLayer)] == [89, 101, 113]
    assert [i for i, l in enumerate(layers) if isinstance(l, UpsampleLayer)] == [92, 104]
    # Darknet-53: every residual adds the output three layers back; stride-2 convs at 1, 5, 12, 37, 62.
    assert all(l.source == i - 3 for i, l in enumerate(layers) if isinstance(l, ShortcutLayer))
    assert [i for i, l in enumerate(layers) if isinstance(l, ConvLayer) and l.stride == 2] == [1, 5, 12, 37, 62]
    # SPP block (yolov3-spp.cfg): stride-1 max-pools 5, 9, 13 over layer 77, concatenated with it.
    assert [(i, l.size, l.stride) for i, l in enumerate(layers) if isinstance(l, MaxPoolLayer)] == [
        (78, 5, 1),
        (80, 9, 1),
        (82, 13, 1),
    ]
    routes = {i: l.sources for i, l in enumerate(layers) if isinstance(l, RouteLayer)}
    assert routes == {79: (77,), 81: (77,), 83: (82, 80, 78, 77), 90: (86,), 93: (92, 61), 102: (98,), 105: (104, 36)}
    # Heads: yolov3-spp.cfg's anchors by stride, 80 classes, 255-channel linear convs before each.
    heads = [layers[i] for i in (89, 101, 113)]
    assert [h.anchors for h in heads] == [
        ((116, 90), (156, 198), (373, 326)),
        ((30, 61), (62, 45), (59, 119)),
        ((10, 13), (16, 30), (33, 23)),
    ]
    assert [h.mask for h in heads] == [(6, 7, 8), (3, 4, 5), (0, 1, 2)]
    assert all(h.classes == 80 for h in heads)
    for i in (88, 100, 112):
        assert layers[i] == ConvLayer(
            filters=255, size=1, stride=1, padding=0, batch_normalize=False, activation="linear"
        )
    assert layers[0] == ConvLayer(filters=32, size=3, stride=1, padding=1, batch_normalize=True, activation="leaky")


def test_built_in_layer_list_equals_the_fixture(spp_spec):
    built_in = parse_darknet_cfg(yolov3_spp_cfg())
    assert built_in.layers == spp_spec.layers and built_in.net == spp_spec.net


def test_yolov3_spp_weight_count():
    # yolov3.weights is 248,007,048 bytes (AlexeyAB/darknet#1910): (248,007,048 − 20-byte header) / 4 =
    # 62,001,757 floats. YOLOv3-SPP adds one 1×1 conv 2048→512 with BN: 2048·512 + 4·512 = 1,050,624.
    model = Darknet(parse_darknet_cfg(yolov3_spp_cfg()))
    buf = io.BytesIO()
    write_darknet_weights(model, buf)
    assert len(buf.getvalue()) == 20 + 4 * (62_001_757 + 1_050_624)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[net]\nwidth=64\n[dropout]\nprobability=.5\n", "not supported; supported: net, convolutional"),
        ("[net]\n[convolutional]\nfilters=8\nactivation=mish\n", "activation 'mish' is not supported"),
        ("[net]\n[convolutional]\nfilters=8\nactivation=leaky\n[route]\nlayers=-2\n", "outside 0..0"),
        ("[net]\n[convolutional]\nfilters=eight\nactivation=leaky\n", "not an integer"),
        ("[convolutional]\nfilters=8\n", r"first section must be \[net\]"),
        ("[net]\nwidth 64\n", "expected"),
    ],
)
def test_cfg_errors_name_the_line(text, match):
    with pytest.raises(DarknetCfgError, match=match) as e:
        parse_darknet_cfg(text, "my.cfg")
    assert "my.cfg" in str(e.value)


# ------------------------------------------------------------------------------------------------------ network


def test_forward_rows_at_small_input(spp_spec):
    model = Darknet(spp_spec).eval()
    with torch.inference_mode():
        rows = model(torch.rand(2, 3, 160, 160))
    assert rows.shape == (2, 3 * (5 * 5 + 10 * 10 + 20 * 20), 85)  # strides 32, 16, 8
    assert torch.all((rows[..., 4:] >= 0) & (rows[..., 4:] <= 1))


@pytest.mark.slow
def test_forward_at_608(spp_spec):
    model = Darknet(spp_spec).eval()
    with torch.inference_mode():
        rows = model(torch.rand(1, 3, 608, 608))
    assert rows.shape == (1, 22_743, 85)  # (19² + 38² + 76²) cells × 3 anchors


def test_decode_formula_by_hand():
    # One head, 2 anchors, 1 class, 2×3 grid, stride 8: channels [anchor][tx, ty, tw, th, to, tc].
    raw = torch.zeros(1, 2 * 6, 2, 3)
    raw[0, 6 + 0, 1, 2] = 1.0  # anchor 1, cell (row 1, col 2): tx
    raw[0, 6 + 3, 1, 2] = np.log(2.0)  # th
    raw[0, 6 + 4, 1, 2] = 2.0  # objectness logit
    raw[0, 6 + 5, 1, 2] = -1.0  # class logit
    out = decode_yolo(raw, torch.tensor([[10.0, 20.0], [30.0, 40.0]]), (8, 8))
    assert out.shape == (1, 2 * 3 * 2, 6)
    row = out[0, (1 * 3 + 2) * 2 + 1]  # rows ordered (cell row, cell column, anchor)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(row.numpy(), [(sig(1) + 2) * 8, (0.5 + 1) * 8, 30, 80, sig(2), sig(-1)], rtol=1e-6)
    np.testing.assert_allclose(out[0, 0].numpy(), [4, 4, 10, 20, 0.5, 0.5])  # zeros: cell centre, anchor size


def test_maxpool_padding_zeros_vs_darknet():
    spec = parse_darknet_cfg("[net]\nwidth=32\nheight=32\nchannels=1\n[maxpool]\nsize=5\nstride=1\n")
    x = -1.0 - torch.rand(1, 1, 8, 8)  # all negative, like LeakyReLU outputs can be
    zeros = Darknet(spec, maxpool_padding="zeros").layers[0](x)
    darknet = Darknet(spec, maxpool_padding="darknet").layers[0](x)
    assert zeros.shape == darknet.shape == x.shape
    assert torch.all(zeros[..., :2, :] == 0) and torch.all(darknet < 0)  # AlphaPose's zero border wins the max
    assert torch.equal(zeros[..., 2:-2, 2:-2], darknet[..., 2:-2, 2:-2])


# ------------------------------------------------------------------------------------------------ .weights files


@pytest.mark.parametrize("version, header_bytes", [((0, 2, 0), 20), ((0, 1, 0), 16)])
def test_weights_round_trip_tiny(tmp_path, version, header_bytes):
    spec = read_darknet_cfg(str(TINY_CFG))
    written = Darknet(spec).eval()
    _randomize(written, seed=3)
    path = tmp_path / "tiny.weights"
    digest = write_darknet_weights(written, str(path), version=version, seen=123456)
    data = path.read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    floats = sum(
        t.numel()
        for _, c, b in written.conv_blocks()
        for t in ([b.bias, b.weight, b.running_mean, b.running_var] if b is not None else [c.bias]) + [c.weight]
    )
    assert len(data) == header_bytes + 4 * floats
    fresh = Darknet(spec).eval()
    info = read_darknet_weights(fresh, str(path))
    assert (info.version, info.seen, info.sha256, info.num_floats) == (version, 123456, digest, floats)
    a, b = written.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(written(x), fresh(x))


@pytest.mark.slow
def test_weights_round_trip_yolov3_spp(tmp_path, spp_spec):
    written = Darknet(spp_spec).eval()
    _randomize(written, seed=5)
    path = tmp_path / "yolov3-spp.weights"
    write_darknet_weights(written, str(path))
    fresh = Darknet(spp_spec).eval()
    read_darknet_weights(fresh, str(path))
    a, b = written.state_dict(), fresh.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(1, 3, 96, 96)
    with torch.inference_mode():
        assert torch.equal(written(x), fresh(x))


def test_weights_errors_name_the_file(tmp_path):
    model = Darknet(read_darknet_cfg(str(TINY_CFG)))
    path = tmp_path / "t.weights"
    write_darknet_weights(model, str(path))
    short = tmp_path / "short.weights"
    short.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DarknetWeightsError, match=r"short\.weights: holds \d+ float32 values .* needs \d+"):
        read_darknet_weights(model, str(short))
    with pytest.raises(DarknetWeightsError, match="the weights belong to a different cfg"):
        read_darknet_weights(Darknet(parse_darknet_cfg(yolov3_spp_cfg())), str(path))
    with pytest.raises(DarknetWeightsError, match="not found: .*missing.weights"):
        read_darknet_weights(model, str(tmp_path / "missing.weights"))
    (tmp_path / "tiny_header.weights").write_bytes(b"\x00" * 8)
    with pytest.raises(DarknetWeightsError, match="too short for a darknet header"):
        read_darknet_weights(model, str(tmp_path / "tiny_header.weights"))


# ------------------------------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize(
    "w, h, y_range, scale, inverse",
    [
        (640, 480, (76, 531), 0.95, (0, 76)),
        (1280, 719, (133, 473), 0.475, (0, 133.2375)),
        (500, 375, (76, 531), 1.216, (-3e-5, 75.99998)),
    ],
)
def test_letterbox_reference_values(w, h, y_range, scale, inverse):
    """Reference values produced by running AlphaPose's own ``letterbox_image`` and ``images_detection`` inverse."""
    frame = np.full((h, w, 3), 200, np.uint8)
    canvas, geo = letterbox(frame, 608)
    assert canvas.shape == (608, 608, 3) and canvas.dtype == np.uint8
    rows = np.flatnonzero((canvas != 128).any(axis=(1, 2)))
    assert (rows[0], rows[-1]) == y_range
    assert (canvas[: y_range[0]] == 128).all() and (canvas[y_range[1] + 1 :] == 128).all()
    np.testing.assert_allclose(geo.scale, scale, rtol=1e-6)
    np.testing.assert_allclose(geo.offset_xy, inverse, atol=1e-5)


def test_letterbox_content_is_cubic_resize_and_inverse_clamps():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(719, 1280, 3), dtype=np.uint8)
    canvas, geo = letterbox(frame, 608)
    x0, y0, nw, nh = geo.content_xywh
    assert (x0, y0, nw, nh) == (0, 133, 608, 341)
    assert np.array_equal(
        canvas[y0 : y0 + nh, x0 : x0 + nw], cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_CUBIC)
    )
    # Inverse: float offsets, divide by the float32 scale, clamp to [0, W] × [0, H] (AlphaPose's images_detection).
    boxes = np.array([[0, 133.2375, 608, 474.7625], [-50, 100, 700, 700]], np.float32)
    back = letterbox_to_image(boxes, geo)
    np.testing.assert_allclose(back[0], [0, 0, 1280, 719], atol=1e-3)
    np.testing.assert_array_equal(back[1], np.array([0, 0, 1280, 719], np.float32))
    assert letterbox_to_image(np.zeros((0, 4)), geo).shape == (0, 4)


# ------------------------------------------------------------------------------------------ filter and NMS


def test_nms_plus_one_areas_and_greater_equal():
    # +1 areas: A is 10×10 = 100, B = 10×6 = 60, inside A: IoU = 60/100 = 0.6 exactly → suppressed (≥).
    # Without +1 it would be 45/81 = 0.556 and a '>' NMS would keep B either way.
    a, b = [0, 0, 9, 9], [0, 0, 9, 5]
    c = [0, 0, 9, 4]  # 50/100 = 0.5 → kept
    assert nms_plus_one(np.array([a, b], np.float32), np.array([0.9, 0.8]), 0.6).tolist() == [0]
    assert nms_plus_one(np.array([a, c], np.float32), np.array([0.9, 0.8]), 0.6).tolist() == [0, 1]
    # Output in descending score order; the lower-scored of an overlapping pair goes.
    keep = nms_plus_one(np.array([b, a, [50, 50, 60, 60]], np.float32), np.array([0.5, 0.9, 0.7]), 0.6)
    assert keep.tolist() == [1, 2]
    assert nms_plus_one(np.zeros((0, 4)), np.zeros(0), 0.6).dtype == np.int64


def _row(box_xyxy, obj, cls_probs):
    x1, y1, x2, y2 = box_xyxy
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, obj, *cls_probs]


def test_person_filter_confidence_and_score():
    rows = torch.tensor(
        [
            _row([10, 10, 50, 90], 0.10, [0.9, 0.1, 0.0]),  # objectness not > 0.1: dropped
            _row([100, 10, 150, 90], 0.95, [0.3, 0.6, 0.0]),  # top class is not person: dropped
            _row([200, 10, 250, 90], 0.11, [0.2, 0.1, 0.0]),  # weak person class probability still counts
            _row([300, 10, 350, 90], 0.80, [0.5, 0.5, 0.0]),  # tie: first maximal class (person) wins
        ],
        dtype=torch.float32,
    )
    boxes, scores = yolo_person_boxes(rows, confidence=0.1, nms_iou=0.6)
    np.testing.assert_allclose(boxes, [[300, 10, 350, 90], [200, 10, 250, 90]])
    np.testing.assert_allclose(scores, [0.80, 0.11], rtol=1e-6)  # objectness alone, not obj × class
    assert boxes.dtype == scores.dtype == np.float32


class _StubYolo(nn.Module):
    """Returns hand-made rows per image, chosen by the frame's grey level (10 → image A, else image B)."""

    def __init__(self, rows_a: torch.Tensor, rows_b: torch.Tensor) -> None:
        super().__init__()
        n = max(len(rows_a), len(rows_b))
        pad = lambda r: torch.cat([r, torch.zeros(n - len(r), r.shape[1])])  # noqa: E731 (objectness 0 rows)
        self.rows_a, self.rows_b = pad(rows_a), pad(rows_b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.rows_a if round(float(v) * 255) == 10 else self.rows_b for v in x[:, 0, 32, 32]])


def test_deviation_nms_threshold_does_not_depend_on_the_batch():
    """Deviation from AlphaPose (``dynamic_write_results``): AlphaPose would re-run NMS at 0.55 for the whole batch
    once it holds > 100 detections, dropping image A's second box (IoU 0.553) when B is in the same batch."""
    rows_a = torch.tensor([_row([10, 10, 29, 29], 0.9, [0.9]), _row([11, 15, 30, 34], 0.8, [0.9])])
    iou = nms_plus_one(np.array([[10, 10, 29, 29], [11, 15, 30, 34]], np.float32), np.array([1, 0]), 0.55)
    assert len(iou) == 1  # at AlphaPose's fallback threshold the pair would collapse
    rows_b = torch.tensor(
        [
            _row([1 + 4 * (k % 15), 1 + 4 * (k // 15), 3 + 4 * (k % 15), 3 + 4 * (k // 15)], 0.9, [0.9])
            for k in range(150)
        ]
    )
    det = YoloPersonDetector(
        _StubYolo(rows_a, rows_b),
        arch="yolov3_spp",
        weights_id="random",
        device="cpu",
        input_size=64,
        nms_iou=0.6,
        score_threshold=0.1,
        min_box_area=0.0,
        max_persons=None,
    )
    frame_a, frame_b = np.full((64, 64, 3), 10, np.uint8), np.full((64, 64, 3), 200, np.uint8)
    alone = det([frame_a])[0]
    together = det([frame_a, frame_b])
    assert len(alone) == 2 and len(together[1]) == 150
    np.testing.assert_array_equal(alone.boxes_xyxy, together[0].boxes_xyxy)
    np.testing.assert_array_equal(alone.scores, together[0].scores)


def test_module_example_runs():
    assert doctest.testmod(models.darknet, raise_on_error=True).attempted >= 2
